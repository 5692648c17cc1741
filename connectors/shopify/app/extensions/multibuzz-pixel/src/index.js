// Multibuzz Web Pixel (shopify.md SHP-92..SHP-96).
//
// Dependency-free ES2020. The first statement below is the only module statement of this file: the Node.js test
// harness (SHP-101) and the custom-pixel snippet generator (SHP-79, connectors/shopify/custom_pixel.py) both swap
// that exact line for their own `register`, so keep it unique and unchanged.
// Only the fields listed in SHP-95 are read from an event: never e-mail, phone, names, addresses, customer ids or
// checkout attributes.
import {register} from '@shopify/web-pixels-extension';

const VISITOR_KEY = '_mbuzz_vid';
const VISITOR_ID = /^[0-9a-f]{64}$/;
const COOKIE_ATTRIBUTES = '; max-age=63072000; path=/; SameSite=Lax; Secure';
const EXPIRED_COOKIE = VISITOR_KEY + '=; max-age=0; path=/; SameSite=Lax; Secure';
const FLUSH_DELAY_MS = 1000;
const FLUSH_AT_EVENTS = 10;
const BATCH_MAX_EVENTS = 20;
const BATCH_MAX_BYTES = 60 * 1024;
const RETRY_MIN_MS = 500;
const RETRY_SPREAD_MS = 1000;

// The 13 standard events of SHP-75, each subscribed to on its own (never to every event at once).
const STANDARD_EVENTS = [
  'page_viewed',
  'product_viewed',
  'collection_viewed',
  'search_submitted',
  'product_added_to_cart',
  'product_removed_from_cart',
  'cart_viewed',
  'checkout_started',
  'checkout_contact_info_submitted',
  'checkout_address_info_submitted',
  'checkout_shipping_info_submitted',
  'payment_info_submitted',
  'checkout_completed',
];
const FLUSH_IMMEDIATELY = ['checkout_started', 'checkout_completed'];

// ---------------------------------------------------------------------------------------------------------------
// Data mapping (SHP-95)
// ---------------------------------------------------------------------------------------------------------------

function isObject(value) {
  return value !== null && typeof value === 'object';
}

function field(object, key) {
  return isObject(object) ? object[key] : undefined;
}

function scalar(value) {
  const type = typeof value;
  return type === 'string' || type === 'boolean' || (type === 'number' && isFinite(value)) ? value : undefined;
}

// 'gid://shopify/ProductVariant/44120938201011' -> '44120938201011'; other ids are kept as strings.
function numericTail(value) {
  const id = scalar(value);
  if (id === undefined || typeof id === 'boolean') return undefined;
  const text = String(id);
  const match = /^gid:\/\/shopify\/[^/]+\/([0-9]+)(?:[?#].*)?$/.exec(text);
  return match ? match[1] : text;
}

// Copies the entries whose value is a string, a finite number or a boolean; anything else is left out.
function compact(entries) {
  const out = {};
  for (const [key, value] of entries) {
    const kept = scalar(value);
    if (kept !== undefined) out[key] = kept;
  }
  return out;
}

function productFields(variant, cartLine) {
  const product = field(variant, 'product');
  const price = field(variant, 'price');
  const lineTotal = field(field(cartLine, 'cost'), 'totalAmount');
  const entries = [
    ['product_id', numericTail(field(product, 'id'))],
    ['variant_id', numericTail(field(variant, 'id'))],
    ['sku', field(variant, 'sku')],
    ['product_title', field(product, 'title')],
  ];
  if (cartLine !== undefined) entries.push(['quantity', field(cartLine, 'quantity')]);
  entries.push(['price', field(price, 'amount')]);
  if (cartLine !== undefined) entries.push(['line_total', field(lineTotal, 'amount')]);
  const currency = scalar(field(price, 'currencyCode')) !== undefined ? field(price, 'currencyCode')
    : field(lineTotal, 'currencyCode');
  entries.push(['currency', currency]);
  return compact(entries);
}

function checkoutFields(checkout, completed) {
  const total = field(checkout, 'totalPrice');
  const lines = field(checkout, 'lineItems');
  const currency = scalar(field(checkout, 'currencyCode')) !== undefined ? field(checkout, 'currencyCode')
    : field(total, 'currencyCode');
  const entries = [['checkout_token', field(checkout, 'token')]];
  const order = field(checkout, 'order');
  if (completed) entries.push(['order_id', field(order, 'id')]);
  entries.push(
    ['checkout_total', field(total, 'amount')],
    ['currency', currency],
    ['line_count', Array.isArray(lines) ? lines.length : undefined],
  );
  if (completed) entries.push(['is_first_order', field(field(order, 'customer'), 'isFirstOrder')]);
  return compact(entries);
}

function eventData(name, data) {
  switch (name) {
    case 'product_viewed':
      return productFields(field(data, 'productVariant'), undefined);
    case 'product_added_to_cart':
    case 'product_removed_from_cart': {
      const cartLine = isObject(field(data, 'cartLine')) ? field(data, 'cartLine') : {};
      return productFields(field(cartLine, 'merchandise'), cartLine);
    }
    case 'collection_viewed': {
      const collection = field(data, 'collection');
      return compact([
        ['collection_id', numericTail(field(collection, 'id'))],
        ['collection_title', field(collection, 'title')],
      ]);
    }
    case 'search_submitted':
      return compact([['search_term', field(field(data, 'searchResult'), 'query')]]);
    case 'cart_viewed': {
      const cart = field(data, 'cart');
      const total = field(field(cart, 'cost'), 'totalAmount');
      const lines = field(cart, 'lines');
      return compact([
        ['cart_total', field(total, 'amount')],
        ['currency', field(total, 'currencyCode')],
        ['line_count', Array.isArray(lines) ? lines.length : undefined],
      ]);
    }
    case 'checkout_started':
    case 'checkout_contact_info_submitted':
    case 'checkout_address_info_submitted':
    case 'checkout_shipping_info_submitted':
    case 'payment_info_submitted':
      return checkoutFields(field(data, 'checkout'), false);
    case 'checkout_completed':
      return checkoutFields(field(data, 'checkout'), true);
    default:
      return {};
  }
}

function mapEvent(name, event) {
  const doc = field(field(event, 'context'), 'document');
  const mapped = compact([
    ['id', field(event, 'id')],
    ['name', name],
    ['timestamp', field(event, 'timestamp')],
    ['seq', field(event, 'seq')],
    ['url', field(field(doc, 'location'), 'href')],
    ['referrer', field(doc, 'referrer')],
    ['title', field(doc, 'title')],
  ]);
  mapped.data = eventData(name, field(event, 'data'));
  return mapped;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else {
        bytes += 3;
      }
    } else bytes += 3;
  }
  return bytes;
}

function validVisitorId(value) {
  return typeof value === 'string' && VISITOR_ID.test(value);
}

function newVisitorId() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  let hex = '';
  for (let i = 0; i < bytes.length; i += 1) hex += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return hex;
}

function attempt(call) {
  // Resolves to the call's value, or undefined when it throws or rejects: storage must never break tracking.
  try {
    return Promise.resolve(call()).catch(() => undefined);
  } catch (error) {
    return Promise.resolve(undefined);
  }
}

function consentOf(privacy) {
  return {
    analytics: field(privacy, 'analyticsProcessingAllowed') === true,
    marketing: field(privacy, 'marketingAllowed') === true,
    preferences: field(privacy, 'preferencesProcessingAllowed') === true,
    sale_of_data: field(privacy, 'saleOfDataAllowed') === true,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The pixel
// ---------------------------------------------------------------------------------------------------------------

register(({analytics, browser, init, settings, customerPrivacy}) => {
  const config = isObject(settings) ? settings : {};
  const shopDomain = field(field(field(init, 'data'), 'shop'), 'myShopifyDomain');
  let consent = consentOf(field(init, 'customerPrivacy'));
  let generation = 0; // bumped on every consent withdrawal: work started before it is abandoned
  let buffer = []; // [{event, clientId}]
  let timer = null;
  let flushing = false;
  let visitorId = null;
  let visitorPromise = null;

  function tracking(since) {
    return consent.analytics && since === generation;
  }

  function storeVisitorId(id) {
    attempt(() => browser.cookie.set(VISITOR_KEY + '=' + id + COOKIE_ATTRIBUTES));
    attempt(() => browser.localStorage.setItem(VISITOR_KEY, id));
  }

  // SHP-94: cookie, then localStorage, then 32 random bytes; the id is then written to both.
  function resolveVisitorId() {
    if (visitorPromise) return visitorPromise;
    const since = generation;
    visitorPromise = (async () => {
      let id = await attempt(() => browser.cookie.get(VISITOR_KEY));
      if (!tracking(since)) return null;
      if (!validVisitorId(id)) {
        id = await attempt(() => browser.localStorage.getItem(VISITOR_KEY));
        if (!tracking(since)) return null;
      }
      if (!validVisitorId(id)) {
        try {
          id = newVisitorId();
        } catch (error) {
          return null; // no visitor id: the endpoint falls back to the Shopify client id (SHP-73)
        }
      }
      if (visitorId === null) visitorId = id;
      storeVisitorId(visitorId);
      return visitorId;
    })();
    return visitorPromise;
  }

  function adoptVisitorId(answer, since) {
    const id = field(answer, 'visitor_id');
    if (!tracking(since) || !validVisitorId(id) || id === visitorId) return;
    visitorId = id;
    visitorPromise = Promise.resolve(id);
    storeVisitorId(id);
  }

  function withdraw() {
    generation += 1;
    buffer = [];
    if (timer !== null) clearTimeout(timer);
    timer = null;
    flushing = false;
    visitorId = null;
    visitorPromise = null;
    attempt(() => browser.localStorage.removeItem(VISITOR_KEY));
    attempt(() => browser.cookie.set(EXPIRED_COOKIE));
  }

  function onConsent(event) {
    const next = consentOf(field(event, 'customerPrivacy'));
    const withdrawn = consent.analytics && !next.analytics;
    consent = next;
    if (withdrawn) withdraw();
  }

  function envelope(events, clientId) {
    const body = {
      v: 1,
      ingest_key: config.ingestKey,
      account_id: config.accountID,
      shop_domain: shopDomain,
      sent_at: new Date().toISOString(),
      consent: {
        analytics: consent.analytics,
        marketing: consent.marketing,
        preferences: consent.preferences,
        sale_of_data: consent.sale_of_data,
      },
    };
    if (visitorId !== null) body.visitor_id = visitorId;
    if (clientId !== undefined) body.shopify_client_id = clientId;
    body.events = events;
    return body;
  }

  // SHP-96: at most 20 events and 60 KiB per body; one client id per body. An event too large to fit a body on its
  // own is dropped (the endpoint would refuse it).
  function batches(entries) {
    const bodies = [];
    let events = [];
    let clientId;
    let current = null;
    const close = () => {
      if (current !== null) bodies.push(current);
      events = [];
      current = null;
    };
    for (const entry of entries) {
      if (events.length > 0 && (events.length >= BATCH_MAX_EVENTS || entry.clientId !== clientId)) close();
      const candidate = JSON.stringify(envelope(events.concat([entry.event]), entry.clientId));
      if (utf8Length(candidate) <= BATCH_MAX_BYTES) {
        events.push(entry.event);
        clientId = entry.clientId;
        current = candidate;
        continue;
      }
      const alone = JSON.stringify(envelope([entry.event], entry.clientId));
      if (utf8Length(alone) <= BATCH_MAX_BYTES) {
        close();
        events = [entry.event];
        clientId = entry.clientId;
        current = alone;
      }
    }
    close();
    return bodies;
  }

  function post(body, since, retried) {
    if (!tracking(since) || typeof config.endpoint !== 'string' || config.endpoint === '') return;
    let request;
    try {
      request = Promise.resolve(fetch(config.endpoint, {method: 'POST', body, keepalive: true}));
    } catch (error) {
      request = Promise.reject(error);
    }
    request.then(
      (response) => {
        // 4xx (and any other non-2xx) answers are never retried.
        if (!response || !(response.status >= 200 && response.status < 300)) return undefined;
        return Promise.resolve(response.text())
          .then((text) => adoptVisitorId(JSON.parse(text), since))
          .catch(() => undefined);
      },
      () => {
        if (retried) return;
        const delay = RETRY_MIN_MS + Math.floor(Math.random() * (RETRY_SPREAD_MS + 1));
        setTimeout(() => post(body, since, true), delay);
      },
    ).catch(() => undefined);
  }

  // Sends everything buffered once the visitor id is known; events arriving meanwhile join the same send.
  function flush() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (flushing || buffer.length === 0) return;
    flushing = true;
    const since = generation;
    resolveVisitorId().then(() => {
      if (since !== generation) return;
      flushing = false;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      const entries = buffer;
      buffer = [];
      if (!tracking(since)) return;
      for (const body of batches(entries)) post(body, since, false);
    }).catch(() => undefined);
  }

  function onEvent(name, event) {
    if (!consent.analytics) return;
    buffer.push({event: mapEvent(name, event), clientId: scalar(field(event, 'clientId'))});
    resolveVisitorId();
    if (FLUSH_IMMEDIATELY.indexOf(name) >= 0 || buffer.length >= FLUSH_AT_EVENTS) flush();
    else if (timer === null && !flushing) timer = setTimeout(flush, FLUSH_DELAY_MS);
  }

  if (isObject(customerPrivacy) && typeof customerPrivacy.subscribe === 'function') {
    attempt(() => customerPrivacy.subscribe('visitorConsentCollected', onConsent));
  }
  for (const name of STANDARD_EVENTS) {
    analytics.subscribe(name, (event) => {
      try {
        onEvent(name, event);
      } catch (error) {
        // A malformed event never breaks the page or the other subscriptions.
      }
    });
  }
});
