// @ts-check
// Multibuzz Web Pixel (shopify.md SHP-92..SHP-96).
//
// Dependency-free ES2020 with exactly one module statement, the import line below. Shopify's CLI bundles it with
// the real `@shopify/web-pixels-extension`, and so does the Node.js harness (tests/unit/connectors/shopify/pixel_harness.mjs links
// it to the installed package); the custom-pixel snippet generator (SHP-79, connectors/shopify/custom_pixel.py)
// swaps that exact line for an adapter, so keep it unique and unchanged.
//
// The JSDoc types are Shopify's own (the package's .d.ts): `tsc --noEmit` (tests/unit/connectors/shopify/tsconfig.json, run by
// `make lint` and the tests) checks every property path read here, so a misspelt Shopify field fails the build
// instead of silently reading `undefined` (issue 14: `myShopifyDomain` for `myshopifyDomain`). Every read of
// Shopify data uses optional chaining: an event is untrusted and a malformed one must never throw.
// Only the fields listed in SHP-95 are read from an event: never e-mail, phone, names, addresses, customer ids or
// checkout attributes.
import {register} from '@shopify/web-pixels-extension';

/**
 * @typedef {import('@shopify/web-pixels-extension').RegisterInit} RegisterInit
 * @typedef {import('@shopify/web-pixels-extension').PixelEvents} PixelEvents
 * @typedef {import('@shopify/web-pixels-extension').ProductVariant} ProductVariant
 * @typedef {import('@shopify/web-pixels-extension').CartLine} CartLine
 * @typedef {import('@shopify/web-pixels-extension').Cart} Cart
 * @typedef {import('@shopify/web-pixels-extension').Checkout} Checkout
 * @typedef {import('@shopify/web-pixels-extension').Shop} Shop
 * @typedef {import('@shopify/web-pixels-extension').CustomerPrivacyPayload} CustomerPrivacyPayload
 * @typedef {CustomerPrivacyPayload['customerPrivacy']} CustomerPrivacy
 *
 * @typedef {typeof STANDARD_EVENTS[number]} EventName  one of the 13 SHP-75 names this pixel subscribes to
 * @typedef {PixelEvents[EventName]} SubscribedEvent
 * @typedef {string | number | boolean} Scalar
 * @typedef {{[key: string]: Scalar}} Fields
 * @typedef {{[key: string]: Scalar | Fields}} MappedEvent
 * @typedef {{event: MappedEvent, clientId: Scalar | undefined}} Buffered
 * @typedef {{analytics: boolean, marketing: boolean, preferences: boolean, sale_of_data: boolean}} Consent
 * @typedef {{accountID?: unknown, ingestKey?: unknown, endpoint?: unknown}} Settings  shopify.extension.toml
 */

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
const STANDARD_EVENTS = /** @type {const} */ ([
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
]);
/** @type {EventName[]} */
const FLUSH_IMMEDIATELY = ['checkout_started', 'checkout_completed'];

// ---------------------------------------------------------------------------------------------------------------
// Data mapping (SHP-95)
// ---------------------------------------------------------------------------------------------------------------

/**
 * @param {unknown} value
 * @returns {value is object}
 */
function isObject(value) {
  return value !== null && typeof value === 'object';
}

/**
 * A string, a finite number or a boolean; anything else is undefined.
 * @param {unknown} value
 * @returns {Scalar | undefined}
 */
function scalar(value) {
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  return typeof value === 'number' && isFinite(value) ? value : undefined;
}

/**
 * 'gid://shopify/ProductVariant/44120938201011' -> '44120938201011'; other ids are kept as strings.
 * @param {unknown} value
 * @returns {string | undefined}
 */
function numericTail(value) {
  const id = scalar(value);
  if (id === undefined || typeof id === 'boolean') return undefined;
  const text = String(id);
  const match = /^gid:\/\/shopify\/[^/]+\/([0-9]+)(?:[?#].*)?$/.exec(text);
  return match ? match[1] : text;
}

/**
 * Copies the entries whose value is a string, a finite number or a boolean; anything else is left out.
 * @param {Array<[string, unknown]>} entries
 * @returns {Fields}
 */
function compact(entries) {
  /** @type {Fields} */
  const out = {};
  for (const [key, value] of entries) {
    const kept = scalar(value);
    if (kept !== undefined) out[key] = kept;
  }
  return out;
}

/**
 * Product fields from a `productVariant` or a cart line's `merchandise`; a cart line adds quantity and line_total.
 * @param {ProductVariant | null | undefined} variant
 * @param {CartLine | null | undefined} cartLine
 * @param {boolean} isCartLine
 * @returns {Fields}
 */
function productFields(variant, cartLine, isCartLine) {
  const product = variant?.product;
  const price = variant?.price;
  const lineTotal = cartLine?.cost?.totalAmount;
  /** @type {Array<[string, unknown]>} */
  const entries = [
    ['product_id', numericTail(product?.id)],
    ['variant_id', numericTail(variant?.id)],
    ['sku', variant?.sku],
    ['product_title', product?.title],
  ];
  if (isCartLine) entries.push(['quantity', cartLine?.quantity]);
  entries.push(['price', price?.amount]);
  if (isCartLine) entries.push(['line_total', lineTotal?.amount]);
  const currency = scalar(price?.currencyCode) !== undefined ? price?.currencyCode : lineTotal?.currencyCode;
  entries.push(['currency', currency]);
  return compact(entries);
}

/**
 * @param {CartLine | null | undefined} cartLine
 * @returns {Fields}
 */
function cartLineFields(cartLine) {
  return productFields(cartLine?.merchandise, cartLine, true);
}

/**
 * @param {Cart | null | undefined} cart
 * @returns {Fields}
 */
function cartFields(cart) {
  const total = cart?.cost?.totalAmount;
  const lines = cart?.lines;
  return compact([
    ['cart_total', total?.amount],
    ['currency', total?.currencyCode],
    ['line_count', Array.isArray(lines) ? lines.length : undefined],
  ]);
}

/**
 * @param {Checkout | null | undefined} checkout
 * @param {boolean} completed
 * @returns {Fields}
 */
function checkoutFields(checkout, completed) {
  const total = checkout?.totalPrice;
  const lines = checkout?.lineItems;
  const currency = scalar(checkout?.currencyCode) !== undefined ? checkout?.currencyCode : total?.currencyCode;
  /** @type {Array<[string, unknown]>} */
  const entries = [['checkout_token', checkout?.token]];
  const order = checkout?.order;
  if (completed) entries.push(['order_id', order?.id]);
  entries.push(
    ['checkout_total', total?.amount],
    ['currency', currency],
    ['line_count', Array.isArray(lines) ? lines.length : undefined],
  );
  if (completed) entries.push(['is_first_order', order?.customer?.isFirstOrder]);
  return compact(entries);
}

// One extractor per subscribed event, each typed with that event's own Shopify type; the mapped type makes tsc
// refuse a missing or extra name as well as a misspelt field.
/** @type {{[K in EventName]: (event: PixelEvents[K]) => Fields}} */
const EVENT_DATA = {
  page_viewed: () => ({}),
  product_viewed: (event) => productFields(event?.data?.productVariant, undefined, false),
  collection_viewed: (event) => compact([
    ['collection_id', numericTail(event?.data?.collection?.id)],
    ['collection_title', event?.data?.collection?.title],
  ]),
  search_submitted: (event) => compact([['search_term', event?.data?.searchResult?.query]]),
  product_added_to_cart: (event) => cartLineFields(event?.data?.cartLine),
  product_removed_from_cart: (event) => cartLineFields(event?.data?.cartLine),
  cart_viewed: (event) => cartFields(event?.data?.cart),
  checkout_started: (event) => checkoutFields(event?.data?.checkout, false),
  checkout_contact_info_submitted: (event) => checkoutFields(event?.data?.checkout, false),
  checkout_address_info_submitted: (event) => checkoutFields(event?.data?.checkout, false),
  checkout_shipping_info_submitted: (event) => checkoutFields(event?.data?.checkout, false),
  payment_info_submitted: (event) => checkoutFields(event?.data?.checkout, false),
  checkout_completed: (event) => checkoutFields(event?.data?.checkout, true),
};

/**
 * @param {EventName} name the name subscribed to (never the event's own `name`)
 * @param {SubscribedEvent} event
 * @returns {MappedEvent}
 */
function mapEvent(name, event) {
  const doc = event?.context?.document;
  /** @type {MappedEvent} */
  const mapped = compact([
    ['id', event?.id],
    ['name', name],
    ['timestamp', event?.timestamp],
    ['seq', event?.seq],
    ['url', doc?.location?.href],
    ['referrer', doc?.referrer],
    ['title', doc?.title],
  ]);
  // EVENT_DATA[name] takes the event type of `name`; the subscription guarantees the pairing.
  const extract = /** @type {(event: SubscribedEvent) => Fields} */ (EVENT_DATA[name]);
  mapped.data = extract(event);
  return mapped;
}

/**
 * SHP-96: the envelope's shop_domain. Shopify spells it `myshopifyDomain` (lower-case s; the package's `Shop`).
 * @param {RegisterInit | null | undefined} init
 * @returns {Shop['myshopifyDomain'] | undefined}
 */
function shopDomainOf(init) {
  return init?.data?.shop?.myshopifyDomain;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/**
 * @param {string} text
 * @returns {number}
 */
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

/**
 * @param {unknown} value
 * @returns {value is string}
 */
function validVisitorId(value) {
  return typeof value === 'string' && VISITOR_ID.test(value);
}

/** @returns {string} */
function newVisitorId() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  let hex = '';
  for (let i = 0; i < bytes.length; i += 1) hex += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return hex;
}

/**
 * Resolves to the call's value, or undefined when it throws or rejects: storage must never break tracking.
 * @template T
 * @param {() => T} call
 * @returns {Promise<Awaited<T> | undefined>}
 */
function attempt(call) {
  try {
    return Promise.resolve(call()).catch(() => undefined);
  } catch (error) {
    return Promise.resolve(undefined);
  }
}

/**
 * @param {Partial<CustomerPrivacy> | null | undefined} privacy
 * @returns {Consent}
 */
function consentOf(privacy) {
  return {
    analytics: privacy?.analyticsProcessingAllowed === true,
    marketing: privacy?.marketingAllowed === true,
    preferences: privacy?.preferencesProcessingAllowed === true,
    sale_of_data: privacy?.saleOfDataAllowed === true,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The pixel
// ---------------------------------------------------------------------------------------------------------------

register(({analytics, browser, init, settings, customerPrivacy}) => {
  /** @type {Settings} */
  const config = isObject(settings) ? settings : {};
  const shopDomain = shopDomainOf(init);
  let consent = consentOf(init?.customerPrivacy);
  let generation = 0; // bumped on every consent withdrawal: work started before it is abandoned
  /** @type {Buffered[]} */
  let buffer = [];
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  let flushing = false;
  /** @type {string | null} */
  let visitorId = null;
  /** @type {Promise<string | null> | null} */
  let visitorPromise = null;

  /**
   * @param {number} since
   * @returns {boolean}
   */
  function tracking(since) {
    return consent.analytics && since === generation;
  }

  /** @param {string} id */
  function storeVisitorId(id) {
    attempt(() => browser.cookie.set(VISITOR_KEY + '=' + id + COOKIE_ATTRIBUTES));
    attempt(() => browser.localStorage.setItem(VISITOR_KEY, id));
  }

  // SHP-94: cookie, then localStorage, then 32 random bytes; the id is then written to both.
  /** @returns {Promise<string | null>} */
  function resolveVisitorId() {
    if (visitorPromise) return visitorPromise;
    const since = generation;
    visitorPromise = (async () => {
      /** @type {unknown} */
      let stored = await attempt(() => browser.cookie.get(VISITOR_KEY));
      if (!tracking(since)) return null;
      if (!validVisitorId(stored)) {
        stored = await attempt(() => browser.localStorage.getItem(VISITOR_KEY));
        if (!tracking(since)) return null;
      }
      /** @type {string} */
      let id;
      if (validVisitorId(stored)) id = stored;
      else {
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

  /**
   * @param {{visitor_id?: unknown} | null | undefined} answer the parsed ingest answer
   * @param {number} since
   */
  function adoptVisitorId(answer, since) {
    const id = answer?.visitor_id;
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

  /** @param {CustomerPrivacyPayload | null | undefined} event */
  function onConsent(event) {
    const next = consentOf(event?.customerPrivacy);
    const withdrawn = consent.analytics && !next.analytics;
    consent = next;
    if (withdrawn) withdraw();
  }

  /**
   * @param {MappedEvent[]} events
   * @param {Scalar | undefined} clientId
   * @returns {{[key: string]: unknown}}
   */
  function envelope(events, clientId) {
    /** @type {{[key: string]: unknown}} */
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
  /**
   * @param {Buffered[]} entries
   * @returns {string[]}
   */
  function batches(entries) {
    /** @type {string[]} */
    const bodies = [];
    /** @type {MappedEvent[]} */
    let events = [];
    /** @type {Scalar | undefined} */
    let clientId;
    /** @type {string | null} */
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

  /**
   * @param {string} body
   * @param {number} since
   * @param {boolean} retried
   */
  function post(body, since, retried) {
    const endpoint = config.endpoint;
    if (!tracking(since) || typeof endpoint !== 'string' || endpoint === '') return;
    /** @type {Promise<Response>} */
    let request;
    try {
      request = Promise.resolve(fetch(endpoint, {method: 'POST', body, keepalive: true}));
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

  /**
   * @param {EventName} name
   * @param {SubscribedEvent} event
   */
  function onEvent(name, event) {
    if (!consent.analytics) return;
    buffer.push({event: mapEvent(name, event), clientId: scalar(event?.clientId)});
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
