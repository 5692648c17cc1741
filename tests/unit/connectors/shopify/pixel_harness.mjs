// Node.js harness for the Shopify Web Pixel (shopify.md SHP-101, issue 14). Node >= 18.
//
//   node --experimental-vm-modules pixel_harness.mjs < scenario.json   -> report JSON on stdout
//
// The extension runs as a real ES module on Shopify's own runtime: its `import {register} from
// '@shopify/web-pixels-extension'` is linked to the package's ESM build installed in tests/unit/connectors/shopify/node_modules (the
// version pinned in tests/unit/connectors/shopify/package-lock.json), whose `register` is `extend => shopify.extend('WebPixel::
// Render', extend)`. The only host object is a fake `shopify` global recording that call; the harness then calls
// the registered function with the fake Standard API, as Shopify's sandbox does. (Before issue 14 the import line
// was rewritten to a shim, so the package's code never ran; docs/shopify.md "Web Pixel: tested against Shopify's
// own package" explains the choice of vm.SourceTextModule over bundling.)
//
// The pixel and the package run in their own `vm` context whose only globals are the fakes below, so whatever the
// pixel can reach is what the harness gives it: a recording `fetch`, a manual `setTimeout`/`clearTimeout` clock, a
// scripted `crypto.getRandomValues` and `Math.random`, a `Date` on the manual clock, the `shopify` host object and
// trap objects for `self.location`, `location` and `navigator.sendBeacon`. The linker resolves nothing but the one
// package import of the extension and the package's own relative imports (no `node:` modules, no dynamic import).
//
// Scenario (every key optional):
//   mode            "extension" (default): load `source_path` (default: the shipped src/index.js) as an ES module
//                   linked to the installed package; the registered function gets
//                   {analytics, browser, init, settings, customerPrivacy}.
//                   "custom_pixel": run `source` (the custom-pixel snippet) as a classic script, with the
//                   custom-pixel globals `analytics`, `browser`, `init` and `customerPrivacy` (no `register`, no
//                   `settings`, no `shopify`).
//   settings        the extension settings {accountID, ingestKey, endpoint}
//   init            the `init` object; `init.customerPrivacy` is the consent at page load
//   cookies         top-frame cookies at start {name: value} (alias: top_frame_cookies)
//   local_storage   top-frame localStorage at start {key: value}
//   browser_latency_ms   every browser.cookie / browser.localStorage call resolves this late on the manual clock
//   start_time      ISO instant of clock 0 (default 2026-05-20T03:15:00.000Z)
//   random_bytes    hex strings, one per crypto.getRandomValues call, in order (then seeded pseudo-random bytes)
//   math_random     numbers in [0, 1) returned by Math.random, in order (then seeded)
//   random_seed     seed of the pseudo-random fallback (default 20260520)
//   fetch_answers   one per fetch call, in order: {status, body?, delay_ms?} or {network_error: true, delay_ms?};
//                   when exhausted: 202 {accepted, rejected: [], visitor_id} as the endpoint answers (SHP-73, SHP-74)
//   actions         [{delay_ms?, event?: <Shopify standard event with its name>, consent?: <customerPrivacy>}]:
//                   advance the clock by delay_ms (running due timers), then emit the event to its subscribers or
//                   publish visitorConsentCollected with that customerPrivacy
//   settle_ms       clock advance after the last action (default 10000)
//
// Report: {requests: [{at_ms, url, options (fetch init without body), body_type, body_raw, body, bytes}],
//          answers: [{at_ms, request, status | network_error}], cookies_set: [string], cookies, local_storage,
//          storage_ops, subscriptions, privacy_subscriptions, register_calls (shopify.extend calls),
//          extension_points, linked_modules (package files, relative to the package), random_bytes_requested,
//          forbidden, console, errors, pending_timers, now_ms}

import { readFileSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import vm from 'node:vm';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_SOURCE = path.resolve(
  HERE, '..', '..', '..', '..', 'connectors', 'shopify', 'app', 'extensions', 'multibuzz-pixel', 'src', 'index.js',
);
export const PACKAGE = '@shopify/web-pixels-extension';
export const IMPORT_LINE = `import {register} from '${PACKAGE}';`;
export const PACKAGE_DIR = path.join(HERE, 'node_modules', ...PACKAGE.split('/'));
const DEFAULT_START = '2026-05-20T03:15:00.000Z';

function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const clone = (value) => (value === undefined ? undefined : structuredClone(value));

function describe(error) {
  return error && error.stack ? String(error.stack) : String(error);
}

function jsonSafe(value) {
  try {
    return JSON.parse(JSON.stringify(value === undefined ? null : value));
  } catch {
    return String(value);
  }
}

// SHP-92: exactly one line `import {register} from '@shopify/web-pixels-extension';` and no other module statement,
// so nothing else can be linked and the custom-pixel generator (SHP-79) can swap that line.
export function checkSource(source) {
  const lines = source.split('\n');
  const hits = lines.filter((line) => line.replace(/\r$/, '') === IMPORT_LINE).length;
  if (hits !== 1) throw new Error(`expected exactly one line "${IMPORT_LINE}", found ${hits}`);
  const other = lines.find((line) => line.replace(/\r$/, '') !== IMPORT_LINE && /^\s*(import|export)\b/.test(line));
  if (other !== undefined) throw new Error(`unexpected module statement: ${other}`);
  return source;
}

// The file Node's ESM resolver would pick for `import ... from '@shopify/web-pixels-extension'`: the package.json
// "exports" entry "." under the "import" condition (then "default", then "module"). Read here rather than through
// import.meta.resolve, which Node 18 only has behind a flag.
export function packageEntry(dir = PACKAGE_DIR) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  } catch (error) {
    throw new Error(`${PACKAGE} is not installed in ${dir}: run \`make node-install\` (npm ci in tests/unit/connectors/shopify)`);
  }
  const root = manifest.exports && typeof manifest.exports === 'object' && '.' in manifest.exports
    ? manifest.exports['.'] : manifest.exports;
  const target = typeof root === 'string' ? root : (root && (root.import || root.default)) || manifest.module;
  if (typeof target !== 'string') throw new Error(`${PACKAGE} ${manifest.version} has no ESM entry`);
  return path.resolve(dir, target);
}

// Loads the extension as an ES module in `context`, its one import linked to the installed package's ESM build and
// the package's relative imports to its own files; every module is evaluated inside the sandbox context.
async function loadExtension(filename, context, report) {
  if (typeof vm.SourceTextModule !== 'function') {
    throw new Error('vm.SourceTextModule is missing: run the harness as node --experimental-vm-modules');
  }
  const entry = packageEntry();
  const root = realpathSync(PACKAGE_DIR);
  const modules = new Map();
  const packageModule = (file) => {
    const real = realpathSync(file);
    if (!real.startsWith(root + path.sep)) throw new Error(`refused to link ${file}: outside ${PACKAGE}`);
    if (!modules.has(real)) {
      report.linked_modules.push(path.relative(root, real).split(path.sep).join('/'));
      modules.set(real, new vm.SourceTextModule(readFileSync(real, 'utf8'), {
        identifier: pathToFileURL(real).href, context,
      }));
    }
    return modules.get(real);
  };
  const extension = new vm.SourceTextModule(checkSource(readFileSync(filename, 'utf8')), {
    identifier: pathToFileURL(filename).href, context,
  });
  await extension.link((specifier, referencing) => {
    if (referencing === extension) {
      if (specifier !== PACKAGE) throw new Error(`the pixel may import ${PACKAGE} only, not ${specifier}`);
      return packageModule(entry);
    }
    if (!/^\.\.?\//.test(specifier)) {
      throw new Error(`${referencing.identifier} imports ${specifier}: only the package's own files are linked`);
    }
    return packageModule(path.resolve(path.dirname(fileURLToPath(referencing.identifier)), specifier));
  });
  await extension.evaluate();
}

// ------------------------------------------------------------------------------------------------------------------

async function run(scenario) {
  const mode = scenario.mode || 'extension';
  const epoch = Date.parse(scenario.start_time || DEFAULT_START);
  const seeded = mulberry32(scenario.random_seed === undefined ? 20260520 : scenario.random_seed);
  const randomBytes = [...(scenario.random_bytes || [])];
  const mathRandom = [...(scenario.math_random || [])];
  const fetchAnswers = [...(scenario.fetch_answers || [])];
  const latency = Number(scenario.browser_latency_ms || 0);
  const clock = { now: 0 };

  const report = {
    requests: [],
    answers: [],
    cookies_set: [],
    cookies: {},
    local_storage: {},
    storage_ops: [],
    subscriptions: [],
    privacy_subscriptions: [],
    register_calls: 0,
    extension_points: [],
    linked_modules: [],
    random_bytes_requested: [],
    forbidden: [],
    console: [],
    errors: [],
    pending_timers: 0,
    now_ms: 0,
  };
  const jar = { ...(scenario.top_frame_cookies || {}), ...(scenario.cookies || {}) };
  const storage = { ...(scenario.local_storage || {}) };
  const session = {};
  const subscribers = {};
  const privacySubscribers = {};

  // --- the manual clock ----------------------------------------------------------------------------------------
  const timers = new Map();
  let nextTimer = 1;
  const schedule = (fn, ms, pixel) => {
    const id = nextTimer;
    nextTimer += 1;
    const delay = Number(ms);
    timers.set(id, { due: clock.now + (Number.isFinite(delay) && delay > 0 ? delay : 0), fn, pixel });
    return id;
  };
  const guarded = (where, fn) => {
    try {
      fn();
    } catch (error) {
      report.errors.push(`${where}: ${describe(error)}`);
    }
  };
  const drain = async () => {
    for (let i = 0; i < 3; i += 1) await new Promise((resolve) => setImmediate(resolve));
  };
  const advance = async (ms) => {
    const target = clock.now + Math.max(0, Number(ms) || 0);
    await drain();
    for (;;) {
      let nextId = null;
      let next = null;
      for (const [id, timer] of timers) {
        if (timer.due <= target && (next === null || timer.due < next.due)) {
          nextId = id;
          next = timer;
        }
      }
      if (next === null) break;
      timers.delete(nextId);
      clock.now = next.due;
      guarded(next.pixel ? 'timer' : 'harness timer', next.fn);
      await drain();
    }
    clock.now = target;
  };
  const later = (value) => new Promise((resolve) => {
    if (latency > 0) schedule(() => resolve(value()), latency, false);
    else resolve(value());
  });

  // --- randomness ------------------------------------------------------------------------------------------------
  const getRandomValues = (array) => {
    if (!array || typeof array.length !== 'number') throw new TypeError('getRandomValues needs a typed array');
    report.random_bytes_requested.push(array.length * (array.BYTES_PER_ELEMENT || 1));
    const hex = randomBytes.length ? String(randomBytes.shift()) : '';
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    for (let i = 0; i < bytes.length; i += 1) {
      bytes[i] = i * 2 + 2 <= hex.length ? parseInt(hex.slice(i * 2, i * 2 + 2), 16) : Math.floor(seeded() * 256);
    }
    return array;
  };
  const nextMathRandom = () => (mathRandom.length ? Number(mathRandom.shift()) : seeded());

  // --- fetch -----------------------------------------------------------------------------------------------------
  const defaultAnswer = (body) => {
    let visitor = body && body.visitor_id;
    if (typeof visitor !== 'string' || !/^[0-9a-f]{64}$/.test(visitor)) {
      visitor = createHash('sha256')
        .update(`shopify:${body && body.shop_domain}:${body && body.shopify_client_id}`, 'utf8').digest('hex');
    }
    const events = body && Array.isArray(body.events) ? body.events : [];
    return { status: 202, body: { accepted: events.length, rejected: [], visitor_id: visitor } };
  };
  const fakeFetch = (url, options) => {
    const init = options || {};
    const rest = {};
    for (const key of Object.keys(init)) if (key !== 'body') rest[key] = jsonSafe(init[key]);
    const raw = init.body;
    let parsed = null;
    if (typeof raw === 'string') {
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = null;
      }
    }
    const index = report.requests.length;
    report.requests.push({
      at_ms: clock.now,
      url: String(url),
      options: rest,
      body_type: typeof raw,
      body_raw: typeof raw === 'string' ? raw : null,
      body: parsed,
      bytes: typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : null,
    });
    const answer = fetchAnswers.length ? fetchAnswers.shift() : defaultAnswer(parsed);
    return new Promise((resolve, reject) => {
      const settle = () => {
        if (answer.network_error) {
          report.answers.push({ at_ms: clock.now, request: index, network_error: true });
          reject(new TypeError('Failed to fetch'));
          return;
        }
        const status = answer.status === undefined ? 202 : answer.status;
        const text = answer.body === undefined ? '' : (typeof answer.body === 'string' ? answer.body
          : JSON.stringify(answer.body));
        report.answers.push({ at_ms: clock.now, request: index, status });
        resolve({
          status,
          ok: status >= 200 && status < 300,
          headers: { get: () => null },
          text: async () => text,
          json: async () => JSON.parse(text),
        });
      };
      if (answer.delay_ms > 0) schedule(settle, answer.delay_ms, false);
      else settle();
    });
  };

  // --- the Standard API fakes ----------------------------------------------------------------------------------
  const storageOf = (name, store) => ({
    getItem: (key) => {
      report.storage_ops.push({ at_ms: clock.now, storage: name, op: 'getItem', key });
      return later(() => (Object.prototype.hasOwnProperty.call(store, key) ? store[key] : null));
    },
    setItem: (key, value) => {
      report.storage_ops.push({ at_ms: clock.now, storage: name, op: 'setItem', key, value: String(value) });
      return later(() => {
        store[key] = String(value);
      });
    },
    removeItem: (key) => {
      report.storage_ops.push({ at_ms: clock.now, storage: name, op: 'removeItem', key });
      return later(() => {
        delete store[key];
      });
    },
    key: (index) => later(() => Object.keys(store)[index] ?? null),
    get length() {
      return later(() => Object.keys(store).length);
    },
    clear: () => {
      report.storage_ops.push({ at_ms: clock.now, storage: name, op: 'clear' });
      return later(() => {
        for (const key of Object.keys(store)) delete store[key];
      });
    },
  });
  const browser = {
    cookie: {
      get: (name) => {
        report.storage_ops.push({ at_ms: clock.now, storage: 'cookie', op: 'get', key: name ?? null });
        return later(() => {
          if (name === undefined) return Object.entries(jar).map(([k, v]) => `${k}=${v}`).join('; ');
          return Object.prototype.hasOwnProperty.call(jar, name) ? jar[name] : '';
        });
      },
      set: (cookieOrName, value) => {
        const text = value === undefined ? String(cookieOrName) : `${cookieOrName}=${value}`;
        report.cookies_set.push(text);
        return later(() => {
          const [pair, ...attributes] = text.split(';');
          const eq = pair.indexOf('=');
          const name = (eq < 0 ? pair : pair.slice(0, eq)).trim();
          const cookieValue = eq < 0 ? '' : pair.slice(eq + 1).trim();
          const maxAge = attributes.map((a) => a.trim().split('=')).find(([k]) => k.toLowerCase() === 'max-age');
          if (maxAge && Number(maxAge[1]) <= 0) delete jar[name];
          else jar[name] = cookieValue;
          return text;
        });
      },
    },
    localStorage: storageOf('localStorage', storage),
    sessionStorage: storageOf('sessionStorage', session),
    sendBeacon: () => {
      report.forbidden.push('browser.sendBeacon');
      return Promise.resolve(true);
    },
  };
  const analytics = {
    subscribe: (name, callback) => {
      report.subscriptions.push(String(name));
      if (/^all_/.test(String(name))) report.forbidden.push(`analytics.subscribe(${name})`);
      (subscribers[name] = subscribers[name] || []).push(callback);
      return Promise.resolve(undefined);
    },
    publish: (name) => {
      report.forbidden.push(`analytics.publish(${name})`);
      return Promise.resolve(true);
    },
  };
  const customerPrivacy = {
    subscribe: (name, callback) => {
      report.privacy_subscriptions.push(String(name));
      (privacySubscribers[name] = privacySubscribers[name] || []).push(callback);
      return Promise.resolve(undefined);
    },
  };
  const init = clone(scenario.init || {});
  const settings = clone(scenario.settings || {});

  // --- the sandbox -----------------------------------------------------------------------------------------------
  class HarnessDate extends Date {
    constructor(...args) {
      if (args.length === 0) super(epoch + clock.now);
      else super(...args);
    }

    static now() {
      return epoch + clock.now;
    }
  }
  const trap = (what, value) => {
    report.forbidden.push(what);
    return value;
  };
  const globals = {
    fetch: fakeFetch,
    setTimeout: (fn, ms, ...args) => {
      if (typeof fn !== 'function') throw new TypeError('setTimeout needs a function');
      return schedule(() => fn(...args), ms, true);
    },
    clearTimeout: (id) => {
      timers.delete(id);
    },
    setInterval: () => trap('setInterval', 0),
    crypto: { getRandomValues },
    Date: HarnessDate,
    console: Object.fromEntries(['log', 'info', 'warn', 'error', 'debug'].map((level) => [level, (...args) => {
      report.console.push({ level, args: args.map((a) => jsonSafe(a)) });
    }])),
    navigator: {
      userAgent: 'pixel-harness',
      sendBeacon: () => trap('navigator.sendBeacon', true),
    },
    // The host object the package's `register` calls: shopify.extend('WebPixel::Render', fn).
    shopify: {
      extend: (extensionPoint, fn) => {
        report.register_calls += 1;
        report.extension_points.push(String(extensionPoint));
        registered.push(fn);
      },
    },
  };
  const registered = [];
  const self = {};
  Object.defineProperty(self, 'location', { get: () => trap('self.location', { href: 'https://sandbox.invalid/' }) });
  globals.self = self;
  Object.defineProperty(globals, 'location', {
    get: () => trap('location', { href: 'https://sandbox.invalid/' }), enumerable: true,
  });
  Object.defineProperty(globals, 'document', { get: () => trap('document', undefined), enumerable: true });
  if (mode === 'custom_pixel') {
    delete globals.shopify;
    Object.assign(globals, { analytics, browser, init, customerPrivacy });
  } else if (mode !== 'extension') {
    throw new Error(`unknown mode ${mode}`);
  }
  const context = vm.createContext(globals);
  vm.runInContext('Math', context).random = nextMathRandom;

  const onRejection = (error) => report.errors.push(`unhandled rejection: ${describe(error)}`);
  process.on('unhandledRejection', onRejection);
  try {
    if (mode === 'extension') {
      await loadExtension(scenario.source_path || DEFAULT_SOURCE, context, report);
    } else {
      const code = String(scenario.source || '');
      if (code.includes(IMPORT_LINE)) throw new Error('the custom-pixel snippet still carries the import line');
      new vm.Script(code, { filename: 'custom-pixel.js' }).runInContext(context);
    }
  } catch (error) {
    report.errors.push(`load: ${describe(error)}`);
  }
  for (const fn of registered) {
    guarded('register', () => fn({ analytics, browser, init, settings, customerPrivacy }));
  }
  await drain();

  // --- the timeline ----------------------------------------------------------------------------------------------
  for (const action of scenario.actions || []) {
    await advance(action.delay_ms || 0);
    if (action.event) {
      const name = action.event.name;
      for (const callback of subscribers[name] || []) {
        guarded(`subscriber ${name}`, () => callback(clone(action.event)));
      }
    }
    if (action.consent) {
      for (const callback of privacySubscribers.visitorConsentCollected || []) {
        guarded('visitorConsentCollected', () => callback({ customerPrivacy: clone(action.consent) }));
      }
    }
    await drain();
  }
  await advance(scenario.settle_ms === undefined ? 10000 : scenario.settle_ms);
  await drain();
  process.off('unhandledRejection', onRejection);

  report.cookies = { ...jar };
  report.local_storage = { ...storage };
  report.pending_timers = [...timers.values()].filter((t) => t.pixel).length;
  report.now_ms = clock.now;
  return report;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main() {
  const scenario = JSON.parse((await readStdin()) || '{}');
  const report = await run(scenario);
  // Exit only once the whole report is flushed: a pipe takes 64 KiB at a time.
  await new Promise((resolve) => process.stdout.write(JSON.stringify(report) + '\n', resolve));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(() => process.exit(0), (error) => {
    process.stderr.write(describe(error) + '\n');
    process.exit(1);
  });
}
