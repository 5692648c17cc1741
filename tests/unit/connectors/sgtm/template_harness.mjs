// Node.js harness for the server-side GTM tag template (sgtm.md SGTM-42). Node >= 18, no npm packages.
//
//   node template_harness.mjs run [template.tpl]    < scenario.json   -> {outcome, http_requests, cookies_set, logs}
//   node template_harness.mjs tests [template.tpl]  < tests.json      -> {scenarios: [{name, passed, error}], ...}
//
// "run" input: {params, event_data, request: {cookies, headers, remote_address}, now_ms, container,
//               allow_urls?: [pattern, ...] | allow_url?: pattern, seed?, timeout_ms?}
//   The template's ___SANDBOXED_JS_FOR_SERVER___ runs with `new Function('require', 'data', code)`; sendHttpRequest is
//   real HTTP (fetch). `allow_urls` are appended to the send_http `urls` permission (as SGTM-40 does for a deployment).
// "tests" input: the ___TESTS___ YAML parsed to JSON by the caller: {setup, scenarios: [{name, code}]}.
//
// Every shim enforces ___SERVER_PERMISSIONS___: a key, cookie, header, URL or log call they do not allow throws.

import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_TEMPLATE = path.resolve(HERE, '..', '..', '..', '..', 'connectors', 'sgtm', 'template.tpl');
const WAIT_LIMIT_MS = 10000;

export const ALLOWED_REQUIRES = [
  'getEventData', 'getCookieValues', 'setCookie', 'sendHttpRequest', 'getRemoteAddress', 'getRequestHeader',
  'getTimestampMillis', 'generateRandom', 'sha256Sync', 'parseUrl', 'JSON', 'makeString', 'makeNumber',
  'makeInteger', 'getType', 'logToConsole', 'getContainerVersion', 'Math', 'Object',
];

class PermissionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PermissionError';
  }
}

// ------------------------------------------------------------------------------------------------------------------
// Template parsing
// ------------------------------------------------------------------------------------------------------------------

export function parseSections(text) {
  const sections = {};
  const order = [];
  let current = null;
  for (const line of text.split(/\r?\n/)) {
    const match = /^___([A-Z_]+)___$/.exec(line);
    if (match) {
      current = match[1];
      order.push(current);
      sections[current] = [];
    } else if (current) {
      sections[current].push(line);
    }
  }
  const out = {};
  for (const name of order) out[name] = sections[name].join('\n').replace(/^\n+/, '').replace(/\s+$/, '');
  return { sections: out, order };
}

function decodeValue(value) {
  if (value === null || value === undefined) return undefined;
  switch (value.type) {
    case 1: return value.string;
    case 2: return (value.listItem || []).map(decodeValue);
    case 3: {
      const map = {};
      (value.mapKey || []).forEach((key, i) => { map[decodeValue(key)] = decodeValue((value.mapValue || [])[i]); });
      return map;
    }
    case 8: return value.boolean;
    default: return value.string !== undefined ? value.string : value.boolean;
  }
}

export function parsePermissions(json) {
  const permissions = {};
  for (const entry of JSON.parse(json)) {
    const params = {};
    for (const p of entry.instance.param || []) params[p.key] = decodeValue(p.value);
    permissions[entry.instance.key.publicId] = params;
  }
  return permissions;
}

function collectDefaults(params, out) {
  for (const p of params || []) {
    if (p.type === 'GROUP' || p.type === 'LABEL') {
      collectDefaults(p.subParams, out);
      continue;
    }
    if (p.name !== undefined) {
      if (Object.prototype.hasOwnProperty.call(p, 'defaultValue')) out[p.name] = structuredClone(p.defaultValue);
      else if (p.type === 'CHECKBOX') out[p.name] = false;
    }
    if (p.subParams) collectDefaults(p.subParams, out);
  }
  return out;
}

export function loadTemplate(templatePath) {
  const { sections } = parseSections(readFileSync(templatePath, 'utf8'));
  const code = sections.SANDBOXED_JS_FOR_SERVER;
  if (!code) throw new Error('no ___SANDBOXED_JS_FOR_SERVER___ section in ' + templatePath);
  return {
    code,
    permissions: parsePermissions(sections.SERVER_PERMISSIONS || '[]'),
    defaults: collectDefaults(JSON.parse(sections.TEMPLATE_PARAMETERS || '[]'), {}),
  };
}

// ------------------------------------------------------------------------------------------------------------------
// Helpers: GTM value semantics, glob matching, deep equality
// ------------------------------------------------------------------------------------------------------------------

export function getType(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

const makeString = (value) => String(value);
const makeNumber = (value) => Number(value);
const makeInteger = (value) => {
  const number = Number(value);
  return Number.isFinite(number) ? Math.trunc(number) : NaN;
};

function globToRegExp(pattern, starClass) {
  const escaped = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'));
  return new RegExp('^' + escaped.join(starClass) + '$');
}

const globMatch = (pattern, value, starClass = '.*') => globToRegExp(pattern, starClass).test(String(value));

function urlAllowed(patterns, url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  for (const pattern of patterns) {
    const schemeEnd = pattern.indexOf('://');
    if (schemeEnd < 0) continue;
    const scheme = pattern.slice(0, schemeEnd + 1);
    const rest = pattern.slice(schemeEnd + 3);
    const slash = rest.indexOf('/');
    const hostPattern = slash < 0 ? rest : rest.slice(0, slash);
    const pathPattern = slash < 0 ? '/*' : rest.slice(slash);
    if (scheme !== parsed.protocol) continue;
    if (!globMatch(hostPattern, parsed.host, '[^/]*')) continue;
    if (!globMatch(pathPattern, parsed.pathname + parsed.search)) continue;
    return true;
  }
  return false;
}

export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (getType(a) !== getType(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  if (a && b && typeof a === 'object') {
    const keysA = Object.keys(a).filter((k) => a[k] !== undefined).sort();
    const keysB = Object.keys(b).filter((k) => b[k] !== undefined).sort();
    return deepEqual(keysA, keysB) && keysA.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

function show(value) {
  if (typeof value === 'function') return '[function]';
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

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

// ------------------------------------------------------------------------------------------------------------------
// The sandbox: shims enforcing the declared permissions
// ------------------------------------------------------------------------------------------------------------------

function createSandbox(template, scenario, mode) {
  const permissions = structuredClone(template.permissions);
  const extraUrls = [].concat(scenario.allow_urls || [], scenario.allow_url ? [scenario.allow_url] : []);
  if (extraUrls.length && permissions.send_http) {
    permissions.send_http.urls = [...(permissions.send_http.urls || []), ...extraUrls];
  }
  const request = scenario.request || {};
  const eventData = scenario.event_data || {};
  const container = scenario.container || {};
  const random = mulberry32(scenario.seed === undefined ? 20260520 : scenario.seed);

  const state = {
    calls: {}, // api name -> [args]
    mocks: {}, // api name -> function
    cookiesSet: [],
    logs: [],
    httpRequests: [],
    httpResponses: [],
    outcomes: [],
    errors: [],
    inFlight: 0,
  };

  const need = (publicId) => {
    const p = permissions[publicId];
    if (!p) throw new PermissionError(`permission ${publicId} is not declared`);
    return p;
  };

  const real = {
    getEventData(key) {
      const p = need('read_event_data');
      key = String(key);
      if (p.eventDataAccess !== 'any') {
        const ok = (p.keyPatterns || []).some((pattern) => pattern === key || key.startsWith(pattern + '.')
          || globMatch(pattern, key));
        if (!ok) throw new PermissionError(`read_event_data does not allow key "${key}"`);
      }
      if (Object.prototype.hasOwnProperty.call(eventData, key)) return clone(eventData[key]);
      let value = eventData;
      for (const part of key.split('.')) {
        if (value === null || typeof value !== 'object') return undefined;
        value = value[part];
      }
      return clone(value);
    },
    getAllEventData() {
      const p = need('read_event_data');
      if (p.eventDataAccess !== 'any') throw new PermissionError('read_event_data does not allow getAllEventData');
      return clone(eventData);
    },
    getCookieValues(name) {
      const p = need('get_cookies');
      if (p.cookieAccess !== 'any' && !(p.cookieNames || []).some((pattern) => globMatch(pattern, name))) {
        throw new PermissionError(`get_cookies does not allow cookie "${name}"`);
      }
      const value = (request.cookies || {})[name];
      if (value === undefined || value === null) return [];
      return (Array.isArray(value) ? value : [value]).map(String);
    },
    setCookie(name, value, options, noEncode) {
      const p = need('set_cookies');
      const opts = options || {};
      const session = opts['max-age'] === undefined && opts.expires === undefined;
      const ok = (p.allowedCookies || []).some((rule) => globMatch(rule.name || '', name)
        && (rule.domain === '*' || globMatch(rule.domain || '', opts.domain === undefined ? '' : opts.domain))
        && (rule.path === '*' || globMatch(rule.path || '', opts.path === undefined ? '/' : opts.path))
        && (rule.secure === 'any' || (rule.secure === 'secure') === (opts.secure === true))
        && (rule.session === 'any' || (rule.session === 'session') === session));
      if (!ok) throw new PermissionError(`set_cookies does not allow cookie "${name}" with ${show(opts)}`);
      const record = { name, value, options: clone(opts) };
      if (noEncode !== undefined) record.noEncode = noEncode;
      state.cookiesSet.push(record);
    },
    sendHttpRequest(url, callback, options, body) {
      const p = need('send_http');
      if (p.allowedUrls !== 'any' && !urlAllowed(p.urls || [], url)) {
        throw new PermissionError(`send_http does not allow URL "${url}"`);
      }
      if (typeof callback !== 'function') throw new Error('the harness supports only the callback form of sendHttpRequest');
      if (mode !== 'run') throw new Error('sendHttpRequest must be mocked in tests mode');
      const opts = options || {};
      const method = (opts.method || 'GET').toUpperCase();
      const headers = { ...(opts.headers || {}) };
      let parsedBody = body;
      if (typeof body === 'string') {
        try {
          parsedBody = JSON.parse(body);
        } catch {
          parsedBody = body;
        }
      }
      state.httpRequests.push({ method, url, headers, timeout: opts.timeout, body: parsedBody });
      state.inFlight += 1;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), opts.timeout > 0 ? opts.timeout : WAIT_LIMIT_MS);
      const init = { method, headers, signal: controller.signal };
      if (body !== undefined && method !== 'GET' && method !== 'HEAD') init.body = body;
      fetch(url, init)
        .then(async (response) => {
          const text = await response.text();
          const responseHeaders = Object.fromEntries(response.headers.entries());
          state.httpResponses.push({ url, status: response.status, headers: responseHeaders, body: text });
          return [response.status, responseHeaders, text];
        }, (error) => {
          state.httpResponses.push({ url, status: 0, error: String(error && error.message ? error.message : error) });
          return [0, {}, ''];
        })
        .then(([status, responseHeaders, text]) => {
          clearTimeout(timer);
          try {
            callback(status, responseHeaders, text);
          } catch (error) {
            state.errors.push('callback threw: ' + (error && error.stack ? error.stack : error));
          }
        })
        .finally(() => { state.inFlight -= 1; });
    },
    getRemoteAddress() {
      const p = need('read_request');
      if (p.requestAccess !== 'any' && p.remoteAddressAllowed !== true) {
        throw new PermissionError('read_request does not allow the remote address');
      }
      return request.remote_address;
    },
    getRequestHeader(name) {
      const p = need('read_request');
      const lower = String(name).toLowerCase();
      if (p.requestAccess !== 'any' && p.headerAccess !== 'any') {
        const names = (p.headerWhitelist || []).map((h) => String(typeof h === 'object' ? h.headerName : h).toLowerCase());
        if (p.headersAllowed !== true || !names.includes(lower)) {
          throw new PermissionError(`read_request does not allow header "${name}"`);
        }
      }
      const headers = request.headers || {};
      for (const key of Object.keys(headers)) {
        if (key.toLowerCase() === lower) return Array.isArray(headers[key]) ? headers[key].join(', ') : headers[key];
      }
      return undefined;
    },
    getTimestampMillis() {
      return scenario.now_ms === undefined ? Date.now() : scenario.now_ms;
    },
    generateRandom(min, max) {
      return Math.floor(random() * (max - min + 1)) + min;
    },
    sha256Sync(input, options) {
      const encoding = options && options.outputEncoding === 'hex' ? 'hex' : 'base64';
      return createHash('sha256').update(String(input), 'utf8').digest(encoding);
    },
    parseUrl(url) {
      let parsed;
      try {
        parsed = new URL(String(url));
      } catch {
        return undefined;
      }
      const searchParams = {};
      for (const [key, value] of parsed.searchParams.entries()) {
        if (!Object.prototype.hasOwnProperty.call(searchParams, key)) searchParams[key] = value;
        else if (Array.isArray(searchParams[key])) searchParams[key].push(value);
        else searchParams[key] = [searchParams[key], value];
      }
      return {
        href: parsed.href, origin: parsed.origin, protocol: parsed.protocol, host: parsed.host,
        hostname: parsed.hostname, port: parsed.port, pathname: parsed.pathname, search: parsed.search,
        searchParams, hash: parsed.hash,
      };
    },
    makeString,
    makeNumber,
    makeInteger,
    getType,
    logToConsole(...args) {
      const p = need('logging');
      if (p.environments !== 'all' && !(container.debugMode || container.previewMode)) {
        throw new PermissionError('logging is allowed only in debug environments');
      }
      state.logs.push(args.map((a) => (typeof a === 'string' ? a : show(a))).join(' '));
    },
    getContainerVersion() {
      need('read_container_data');
      return {
        containerId: container.containerId || 'GTM-HARNESS',
        debugMode: !!container.debugMode,
        previewMode: !!container.previewMode,
        environmentMode: !!container.environmentMode,
        environmentName: container.environmentName || '',
        version: container.version || '1',
      };
    },
  };

  // The permission check runs first, then a mock (tests mode) or the real shim.
  const PERMISSION_CHECKS = {
    getEventData: (key) => real.getEventData(key),
    getCookieValues: (name) => real.getCookieValues(name),
    getRemoteAddress: () => real.getRemoteAddress(),
    getRequestHeader: (name) => real.getRequestHeader(name),
    getContainerVersion: () => real.getContainerVersion(),
  };
  function checkOnly(name, args) {
    if (PERMISSION_CHECKS[name]) {
      PERMISSION_CHECKS[name](...args);
      return;
    }
    if (name === 'setCookie') {
      const saved = state.cookiesSet.length;
      real.setCookie(...args);
      state.cookiesSet.length = saved;
    } else if (name === 'sendHttpRequest') {
      const p = need('send_http');
      if (p.allowedUrls !== 'any' && !urlAllowed(p.urls || [], args[0])) {
        throw new PermissionError(`send_http does not allow URL "${args[0]}"`);
      }
    } else if (name === 'logToConsole') {
      const p = need('logging');
      if (p.environments !== 'all' && !(container.debugMode || container.previewMode)) {
        throw new PermissionError('logging is allowed only in debug environments');
      }
    }
  }

  const SIMPLE = ['JSON', 'Math', 'Object'];
  const sandboxJSON = Object.freeze({
    parse(text) {
      try {
        return JSON.parse(text);
      } catch {
        return undefined; // GTM: malformed JSON gives undefined
      }
    },
    stringify: (value) => JSON.stringify(value),
  });
  const sandboxObject = Object.freeze({
    keys: (o) => Object.keys(o),
    values: (o) => Object.values(o),
    entries: (o) => Object.entries(o),
    freeze: (o) => Object.freeze(o),
    delete: (o, key) => delete o[key],
  });

  function api(name) {
    return (...args) => {
      (state.calls[name] = state.calls[name] || []).push(args);
      if (state.mocks[name]) {
        checkOnly(name, args);
        return state.mocks[name](...args);
      }
      return real[name](...args);
    };
  }

  function templateRequire(name) {
    if (!ALLOWED_REQUIRES.includes(name)) throw new PermissionError(`require('${name}') is not allowed`);
    if (name === 'JSON') return sandboxJSON;
    if (name === 'Math') return Math;
    if (name === 'Object') return sandboxObject;
    return api(name);
  }

  function testRequire(name) {
    if (!ALLOWED_REQUIRES.includes(name) && !SIMPLE.includes(name)) throw new Error(`require('${name}') is not available`);
    if (name === 'JSON') return sandboxJSON;
    if (name === 'Math') return Math;
    if (name === 'Object') return sandboxObject;
    return real[name];
  }

  function makeData(params) {
    const dataObject = { ...structuredClone(template.defaults), ...clone(params || {}) };
    dataObject.gtmOnSuccess = () => {
      (state.calls.gtmOnSuccess = state.calls.gtmOnSuccess || []).push([]);
      state.outcomes.push('gtmOnSuccess');
    };
    dataObject.gtmOnFailure = () => {
      (state.calls.gtmOnFailure = state.calls.gtmOnFailure || []).push([]);
      state.outcomes.push('gtmOnFailure');
    };
    return dataObject;
  }

  const compiled = new Function('require', 'data', template.code);
  const runTemplate = (params) => compiled(templateRequire, makeData(params));

  return { state, runTemplate, testRequire };
}

// ------------------------------------------------------------------------------------------------------------------
// "run" mode
// ------------------------------------------------------------------------------------------------------------------

async function runMode(template, scenario) {
  const { state, runTemplate } = createSandbox(template, scenario, 'run');
  let error;
  try {
    runTemplate(scenario.params);
  } catch (e) {
    error = e && e.stack ? e.stack : String(e);
  }
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!error && Date.now() < deadline && (state.outcomes.length === 0 || state.inFlight > 0)) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 0));
  let outcome = state.outcomes.length ? state.outcomes[0] : 'timeout';
  if (error || state.errors.length) outcome = 'error';
  const result = {
    outcome,
    http_requests: state.httpRequests,
    cookies_set: state.cookiesSet,
    logs: state.logs,
    http_responses: state.httpResponses,
    outcome_calls: state.outcomes,
  };
  const errors = [...(error ? [error] : []), ...state.errors];
  if (errors.length) result.errors = errors;
  return result;
}

// ------------------------------------------------------------------------------------------------------------------
// "tests" mode: GTM's template test API
// ------------------------------------------------------------------------------------------------------------------

class AssertionFailure extends Error {
  constructor(message) {
    super(message);
    this.name = 'AssertionFailure';
  }
}

function assertThatFactory() {
  return function assertThat(actual, message) {
    const check = (ok, text) => {
      if (!ok) throw new AssertionFailure((message ? message + ': ' : '') + text);
    };
    const subject = {
      isEqualTo(expected) {
        check(deepEqual(actual, expected), `expected ${show(actual)} to equal ${show(expected)}`);
        return subject;
      },
      isNotEqualTo(expected) {
        check(!deepEqual(actual, expected), `expected ${show(actual)} not to equal ${show(expected)}`);
        return subject;
      },
      isStrictlyEqualTo(expected) {
        check(actual === expected, `expected ${show(actual)} to be ${show(expected)}`);
        return subject;
      },
      isNotStrictlyEqualTo(expected) {
        check(actual !== expected, `expected ${show(actual)} not to be ${show(expected)}`);
        return subject;
      },
      isTrue() { check(actual === true, `expected ${show(actual)} to be true`); return subject; },
      isFalse() { check(actual === false, `expected ${show(actual)} to be false`); return subject; },
      isTruthy() { check(!!actual, `expected ${show(actual)} to be truthy`); return subject; },
      isFalsy() { check(!actual, `expected ${show(actual)} to be falsy`); return subject; },
      isDefined() { check(actual !== undefined, 'expected a defined value'); return subject; },
      isUndefined() { check(actual === undefined, `expected ${show(actual)} to be undefined`); return subject; },
      isNull() { check(actual === null, `expected ${show(actual)} to be null`); return subject; },
      isNotNull() { check(actual !== null, 'expected a non-null value'); return subject; },
      isNaN() { check(Number.isNaN(actual), `expected ${show(actual)} to be NaN`); return subject; },
      isEmpty() { check(actual != null && actual.length === 0, `expected ${show(actual)} to be empty`); return subject; },
      isNotEmpty() { check(actual != null && actual.length > 0, `expected ${show(actual)} not to be empty`); return subject; },
      hasLength(length) {
        check(actual != null && actual.length === length, `expected ${show(actual)} to have length ${length}`);
        return subject;
      },
      isGreaterThan(v) { check(actual > v, `expected ${show(actual)} > ${show(v)}`); return subject; },
      isLessThan(v) { check(actual < v, `expected ${show(actual)} < ${show(v)}`); return subject; },
      isAtLeast(v) { check(actual >= v, `expected ${show(actual)} >= ${show(v)}`); return subject; },
      isAtMost(v) { check(actual <= v, `expected ${show(actual)} <= ${show(v)}`); return subject; },
      contains(...expected) {
        for (const item of expected) {
          const ok = typeof actual === 'string' ? actual.includes(item)
            : Array.isArray(actual) && actual.some((element) => deepEqual(element, item));
          check(ok, `expected ${show(actual)} to contain ${show(item)}`);
        }
        return subject;
      },
      doesNotContain(...expected) {
        for (const item of expected) {
          const found = typeof actual === 'string' ? actual.includes(item)
            : Array.isArray(actual) && actual.some((element) => deepEqual(element, item));
          check(!found, `expected ${show(actual)} not to contain ${show(item)}`);
        }
        return subject;
      },
    };
    return subject;
  };
}

function runTestScenario(template, setup, scenario) {
  const { state, runTemplate, testRequire } = createSandbox(template, {}, 'tests');
  const mock = (name, value) => {
    state.mocks[name] = typeof value === 'function' ? value : () => value;
  };
  const mockObject = (name, object) => {
    state.mocks[name] = () => object;
  };
  const runCode = (dataObject) => runTemplate(dataObject);
  const argsEqual = (actual, expected) => {
    const trim = (list) => {
      const copy = [...list];
      while (copy.length && copy[copy.length - 1] === undefined) copy.pop();
      return copy;
    };
    return deepEqual(trim(actual), trim(expected));
  };
  const assertApi = (name) => {
    const calls = () => state.calls[name] || [];
    const subject = {
      wasCalled() {
        if (!calls().length) throw new AssertionFailure(`expected ${name} to be called`);
        return subject;
      },
      wasNotCalled() {
        if (calls().length) throw new AssertionFailure(`expected ${name} not to be called, got ${show(calls())}`);
        return subject;
      },
      wasCalledWith(...expected) {
        if (!calls().some((args) => argsEqual(args, expected))) {
          throw new AssertionFailure(`expected ${name} to be called with ${show(expected)}, got ${show(calls())}`);
        }
        return subject;
      },
      wasNotCalledWith(...expected) {
        if (calls().some((args) => argsEqual(args, expected))) {
          throw new AssertionFailure(`expected ${name} not to be called with ${show(expected)}`);
        }
        return subject;
      },
    };
    return subject;
  };
  const fail = (message) => {
    throw new AssertionFailure(message === undefined ? 'fail() called' : String(message));
  };
  const body = (setup || '') + '\n' + (scenario.code || '');
  try {
    const fn = new Function('runCode', 'mock', 'mockObject', 'assertApi', 'assertThat', 'fail', 'require', body);
    fn(runCode, mock, mockObject, assertApi, assertThatFactory(), fail, testRequire);
    return { name: scenario.name, passed: true };
  } catch (e) {
    return { name: scenario.name, passed: false, error: e && e.stack ? e.stack : String(e) };
  }
}

function testsMode(template, tests) {
  const results = (tests.scenarios || []).map((scenario) => runTestScenario(template, tests.setup, scenario));
  const passed = results.filter((r) => r.passed).length;
  return { scenarios: results, passed, failed: results.length - passed };
}

// ------------------------------------------------------------------------------------------------------------------

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main() {
  const [mode, templateArg] = process.argv.slice(2);
  if (mode !== 'run' && mode !== 'tests') {
    process.stderr.write('usage: node template_harness.mjs run|tests [template.tpl] < input.json\n');
    process.exit(2);
  }
  const input = JSON.parse((await readStdin()) || '{}');
  const template = loadTemplate(templateArg || input.template_path || DEFAULT_TEMPLATE);
  const result = mode === 'run' ? await runMode(template, input) : testsMode(template, input);
  process.stdout.write(JSON.stringify(result) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(() => process.exit(0), (error) => {
    process.stderr.write((error && error.stack ? error.stack : String(error)) + '\n');
    process.exit(1);
  });
}
