___TERMS_OF_SERVICE___

By creating or modifying this file you agree to Google Tag Manager's Community
Template Gallery Developer Terms of Service available at
https://developers.google.com/tag-manager/gallery-tos (or such other URL as
Google may provide), as modified from time to time.


___INFO___

{
  "type": "TAG",
  "id": "cvt_temp_public_id",
  "version": 1,
  "securityGroups": [],
  "displayName": "Multibuzz - Server-Side Attribution",
  "categories": [
    "ANALYTICS",
    "ATTRIBUTION",
    "CONVERSIONS"
  ],
  "brand": {
    "id": "github.com_multibuzz",
    "displayName": "Multibuzz",
    "thumbnail": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAIAAAACACAIAAABMXPacAAABR0lEQVR42u3Z2w3CQAxFwTRDZZRPEVAB4rHe+BoGnU8i4h0jRcpxud7U2OEIAAAQAAACAEAAAAgAAAEAIAAABACAAAAQAAACAEAAAAgAAIUD3Nc+WwdOu7FEgH0GgXcFAACAQIAd02auBQAAADIBagfO3AkAAAAkA1TNHLgQAAAAAADgjLHTtgEAAACzAFYmj1oFAAAADAX4bvicPQAAAEAmwKdfHrcEAAAAAADgxUjlR5CwAQAAAJgCUHsK7fwAAAAYB1B1EL32AAAAmAvw/oXrP10O/18Az86i8Z8HAACAHwBowQMAAACAxmd5AAAAAGh8owIAQB7AmQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAgAAAEAIAAABACAAAAQAAACAEAAAAgAAAEAIAAABACAAMT2AKMX8pRKSdEdAAAAAElFTkSuQmCC"
  },
  "description": "Sends GA4 events from a server container to Multibuzz for multi-touch attribution. One tag handles every event, reads an allowlist of event data and honours consent.",
  "containerContexts": [
    "SERVER"
  ]
}


___TEMPLATE_PARAMETERS___

[
  {
    "type": "TEXT",
    "name": "apiKey",
    "displayName": "API key",
    "simpleValueType": true,
    "valueHint": "pk_sgtm_live_...",
    "help": "Write-only sGTM key (<code>pk_sgtm_live_</code>/<code>pk_sgtm_test_</code>, recommended) or a secret key (<code>sk_live_</code>/<code>sk_test_</code>). Create one on the Multibuzz dashboard.",
    "valueValidators": [
      {
        "type": "NON_EMPTY"
      },
      {
        "type": "REGEX",
        "args": [
          "^(pk_sgtm_(live|test)_[0-9a-f]{32}|sk_(live|test)_[0-9a-f]{32})$"
        ]
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "endpointUrl",
    "displayName": "Collect URL",
    "simpleValueType": true,
    "defaultValue": "https://api.mbuzz.co/sgtm/v1/collect",
    "help": "The Multibuzz sGTM collect endpoint. Self-hosted deployments use their own public URL.",
    "valueValidators": [
      {
        "type": "NON_EMPTY"
      },
      {
        "type": "REGEX",
        "args": [
          "^https?://[^/\\s]+(/\\S*)?$"
        ]
      }
    ]
  },
  {
    "type": "RADIO",
    "name": "callMode",
    "displayName": "Call mode",
    "simpleValueType": true,
    "defaultValue": "auto",
    "radioItems": [
      {
        "value": "auto",
        "displayValue": "Auto: one tag for every event, mapped by Multibuzz",
        "help": "GA4 event names are mapped to sessions, events, conversions and identifies by the gateway."
      },
      {
        "value": "explicit",
        "displayValue": "Explicit: this tag always sends one call type"
      }
    ]
  },
  {
    "type": "SELECT",
    "name": "explicitCall",
    "displayName": "Call type",
    "simpleValueType": true,
    "defaultValue": "event",
    "enablingConditions": [
      {
        "paramName": "callMode",
        "paramValue": "explicit",
        "type": "EQUALS"
      }
    ],
    "selectItems": [
      {
        "value": "session",
        "displayValue": "Session"
      },
      {
        "value": "event",
        "displayValue": "Event"
      },
      {
        "value": "conversion",
        "displayValue": "Conversion"
      },
      {
        "value": "identify",
        "displayValue": "Identify"
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "explicitName",
    "displayName": "Event or conversion type",
    "simpleValueType": true,
    "defaultValue": "",
    "help": "Leave empty to use the GA4 event name.",
    "enablingConditions": [
      {
        "paramName": "callMode",
        "paramValue": "explicit",
        "type": "EQUALS"
      },
      {
        "paramName": "explicitCall",
        "paramValue": "session",
        "type": "NOT_EQUALS"
      },
      {
        "paramName": "explicitCall",
        "paramValue": "identify",
        "type": "NOT_EQUALS"
      }
    ],
    "valueValidators": [
      {
        "type": "REGEX",
        "args": [
          "^[A-Za-z0-9_.:-]{0,100}$"
        ]
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "explicitUserId",
    "displayName": "User id",
    "simpleValueType": true,
    "defaultValue": "",
    "help": "Leave empty to use the event's user_id. The tag sends nothing when no user id is available.",
    "enablingConditions": [
      {
        "paramName": "callMode",
        "paramValue": "explicit",
        "type": "EQUALS"
      },
      {
        "paramName": "explicitCall",
        "paramValue": "identify",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "SIMPLE_TABLE",
    "name": "eventMap",
    "displayName": "Event overrides",
    "help": "Per-event overrides of the automatic mapping. The first row whose GA4 event matches wins; empty name = the GA4 event name.",
    "enablingConditions": [
      {
        "paramName": "callMode",
        "paramValue": "auto",
        "type": "EQUALS"
      }
    ],
    "newRowButtonText": "Add override",
    "simpleTableColumns": [
      {
        "defaultValue": "",
        "displayName": "GA4 event",
        "name": "ga4Event",
        "type": "TEXT",
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "defaultValue": "event",
        "displayName": "Send as",
        "name": "kind",
        "type": "SELECT",
        "selectItems": [
          {
            "value": "event",
            "displayValue": "Event"
          },
          {
            "value": "conversion",
            "displayValue": "Conversion"
          },
          {
            "value": "identify",
            "displayValue": "Identify"
          },
          {
            "value": "skip",
            "displayValue": "Skip"
          }
        ]
      },
      {
        "defaultValue": "",
        "displayName": "Type name",
        "name": "name",
        "type": "TEXT"
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "conversionEvents",
    "displayName": "Extra conversion events",
    "simpleValueType": true,
    "defaultValue": "",
    "valueHint": "book_demo, request_quote",
    "help": "Comma-separated GA4 event names sent as conversions (the conversion type is the event name).",
    "enablingConditions": [
      {
        "paramName": "callMode",
        "paramValue": "auto",
        "type": "EQUALS"
      }
    ],
    "valueValidators": [
      {
        "type": "REGEX",
        "args": [
          "^[A-Za-z0-9_, ]*$"
        ]
      }
    ]
  },
  {
    "type": "SIMPLE_TABLE",
    "name": "customProperties",
    "displayName": "Custom properties",
    "help": "Sent as properties; rows with an empty key are dropped. Values are sent as strings.",
    "newRowButtonText": "Add property",
    "simpleTableColumns": [
      {
        "defaultValue": "",
        "displayName": "Key",
        "name": "key",
        "type": "TEXT"
      },
      {
        "defaultValue": "",
        "displayName": "Value",
        "name": "value",
        "type": "TEXT"
      }
    ]
  },
  {
    "type": "GROUP",
    "name": "consentGroup",
    "displayName": "Consent",
    "groupStyle": "ZIPPY_CLOSED",
    "subParams": [
      {
        "type": "SELECT",
        "name": "consentPolicy",
        "displayName": "Consent policy",
        "simpleValueType": true,
        "defaultValue": "honour_signal",
        "help": "Analytics is allowed when the signal grants it; with 'Honour the signal' also when no signal is present.",
        "selectItems": [
          {
            "value": "honour_signal",
            "displayValue": "Honour the signal (unknown counts as allowed)"
          },
          {
            "value": "require_granted",
            "displayValue": "Require analytics_storage granted"
          }
        ]
      }
    ]
  },
  {
    "type": "GROUP",
    "name": "cookieGroup",
    "displayName": "Cookie",
    "groupStyle": "ZIPPY_CLOSED",
    "subParams": [
      {
        "type": "TEXT",
        "name": "cookieDomain",
        "displayName": "Cookie domain",
        "simpleValueType": true,
        "defaultValue": "auto",
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "type": "TEXT",
        "name": "cookiePath",
        "displayName": "Cookie path",
        "simpleValueType": true,
        "defaultValue": "/",
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "type": "CHECKBOX",
        "name": "cookieHttpOnly",
        "checkboxText": "HttpOnly visitor cookie",
        "simpleValueType": true,
        "defaultValue": false,
        "help": "Keep unchecked so the Shopify pixel and the browser SDKs can share the visitor id."
      },
      {
        "type": "TEXT",
        "name": "cookieMaxAgeDays",
        "displayName": "Cookie lifetime (days)",
        "simpleValueType": true,
        "defaultValue": "730",
        "help": "At most 730 days.",
        "valueValidators": [
          {
            "type": "REGEX",
            "args": [
              "^[1-9][0-9]{0,2}$"
            ]
          }
        ]
      }
    ]
  },
  {
    "type": "GROUP",
    "name": "advancedGroup",
    "displayName": "Advanced",
    "groupStyle": "ZIPPY_CLOSED",
    "subParams": [
      {
        "type": "RADIO",
        "name": "logType",
        "displayName": "Logging",
        "simpleValueType": true,
        "defaultValue": "debug",
        "radioItems": [
          {
            "value": "no",
            "displayValue": "Do not log"
          },
          {
            "value": "debug",
            "displayValue": "Log in debug and preview mode"
          },
          {
            "value": "always",
            "displayValue": "Always log"
          }
        ]
      },
      {
        "type": "CHECKBOX",
        "name": "optimistic",
        "checkboxText": "Optimistic mode (succeed without waiting for the answer)",
        "simpleValueType": true,
        "defaultValue": false
      },
      {
        "type": "TEXT",
        "name": "timeoutMs",
        "displayName": "HTTP timeout (ms)",
        "simpleValueType": true,
        "defaultValue": "5000",
        "valueValidators": [
          {
            "type": "POSITIVE_NUMBER"
          }
        ]
      }
    ]
  },
  {
    "type": "GROUP",
    "name": "v1Group",
    "displayName": "Settings kept from v1",
    "groupStyle": "ZIPPY_CLOSED",
    "help": "Filled in only on tags created with the v1 template: updating the template keeps their values under these names. Each one is used only where the matching v2 setting above is empty or at its default. New tags leave them empty.",
    "subParams": [
      {
        "type": "SELECT",
        "name": "callType",
        "displayName": "Call type (v1)",
        "simpleValueType": true,
        "notSetText": "Not set: use Call mode above",
        "help": "A v1 tag's call type. When set and Call mode is not Explicit, the tag sends this call type as an explicit call. Clear it to use Call mode.",
        "selectItems": [
          {
            "value": "session",
            "displayValue": "Session"
          },
          {
            "value": "event",
            "displayValue": "Event"
          },
          {
            "value": "conversion",
            "displayValue": "Conversion"
          },
          {
            "value": "identify",
            "displayValue": "Identify"
          }
        ]
      },
      {
        "type": "TEXT",
        "name": "eventType",
        "displayName": "Event / conversion type (v1)",
        "simpleValueType": true,
        "help": "Used when Event or conversion type above is empty."
      },
      {
        "type": "TEXT",
        "name": "revenue",
        "displayName": "Revenue (v1)",
        "simpleValueType": true,
        "help": "A conversion's value when the event data carries none."
      },
      {
        "type": "TEXT",
        "name": "currency",
        "displayName": "Currency (v1)",
        "simpleValueType": true,
        "help": "A conversion's currency when the event data carries none."
      },
      {
        "type": "TEXT",
        "name": "userId",
        "displayName": "User ID (v1)",
        "simpleValueType": true,
        "help": "Used when User id above is empty."
      },
      {
        "type": "TEXT",
        "name": "apiUrl",
        "displayName": "API URL (v1)",
        "simpleValueType": true,
        "help": "A v1 API base URL such as https://multibuzz.example.com/api/v1. When it is not v1's default and Collect URL is empty or at its default, the tag posts to the same host's /sgtm/v1/collect."
      },
      {
        "type": "CHECKBOX",
        "name": "debug",
        "checkboxText": "Debug logging (v1)",
        "simpleValueType": true,
        "defaultValue": false,
        "help": "When checked and Logging is at its default, the tag always logs."
      }
    ]
  }
]


___SANDBOXED_JS_FOR_SERVER___

const getEventData = require('getEventData');
const getCookieValues = require('getCookieValues');
const setCookie = require('setCookie');
const sendHttpRequest = require('sendHttpRequest');
const getRemoteAddress = require('getRemoteAddress');
const getRequestHeader = require('getRequestHeader');
const getTimestampMillis = require('getTimestampMillis');
const generateRandom = require('generateRandom');
const sha256Sync = require('sha256Sync');
const parseUrl = require('parseUrl');
const JSON = require('JSON');
const makeString = require('makeString');
const makeNumber = require('makeNumber');
const makeInteger = require('makeInteger');
const getType = require('getType');
const logToConsole = require('logToConsole');
const getContainerVersion = require('getContainerVersion');
const Math = require('Math');
const Object = require('Object');

const TEMPLATE_VERSION = '2.0.0';
const COOKIE_NAME = '_mbuzz_vid';
const MAX_COOKIE_DAYS = 730;
const SECONDS_PER_DAY = 86400;
const MAX_ITEMS = 50;
const DEFAULT_TIMEOUT_MS = 5000;
const HEX_DIGITS = '0123456789abcdef';
const DECIMAL_DIGITS = '0123456789';
const MEASUREMENT_TEST_PREFIX = 'https://gtm-msr.appspot.com/';
const CONVERSION_EVENT_NAMES = ['purchase', 'refund', 'generate_lead', 'qualify_lead', 'close_convert_lead', 'sign_up'];
const ITEM_KEYS = ['item_id', 'item_name', 'price', 'quantity', 'item_brand', 'item_category', 'item_variant'];
// v1 settings (docs/sgtm.md SGTM-4-D1): a v1 tag updated to this template keeps its values under the v1 names.
const V1_CALL_TYPES = ['session', 'event', 'conversion', 'identify'];
const V1_DEFAULT_API_URL = 'https://mbuzz.co/api/v1';
const V1_API_PATH = '/api/v1';
const HOSTED_COLLECT_URL = 'https://api.mbuzz.co/sgtm/v1/collect';
const COLLECT_PATH = '/sgtm/v1/collect';

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

function isAbsent(value) {
  return value === undefined || value === null || value === '';
}

function textParam(value) {
  return isAbsent(value) ? '' : makeString(value).trim();
}

function isChecked(value) {
  return value === true || value === 'true';
}

// Event data is read only through this function, only for the keys of the read_event_data permission.
function readEvent(key) {
  const value = getEventData(key);
  return isAbsent(value) ? undefined : value;
}

function put(target, key, value) {
  if (!isAbsent(value)) {
    target[key] = value;
  }
}

function isHex64(value) {
  if (getType(value) !== 'string' || value.length !== 64) {
    return false;
  }
  for (let i = 0; i < value.length; i++) {
    if (HEX_DIGITS.indexOf(value.charAt(i)) < 0) {
      return false;
    }
  }
  return true;
}

function sha256Hex(input) {
  return sha256Sync(input, {outputEncoding: 'hex'});
}

function toNumber(value) {
  if (isAbsent(value)) {
    return undefined;
  }
  if (getType(value) === 'string' && value.trim() === '') {
    return undefined;
  }
  const number = makeNumber(value);
  // NaN and the infinities are not numbers JSON can carry.
  if (getType(number) !== 'number' || number - number !== 0) {
    return undefined;
  }
  return number;
}

function startsWith(text, prefix) {
  return getType(text) === 'string' && text.slice(0, prefix.length) === prefix;
}

function firstValue(value) {
  if (getType(value) === 'array') {
    return value.length > 0 ? value[0] : undefined;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Logging (SGTM-15): one JSON line per request, answer or skip; never the key, the Authorization header or user_data.
// ---------------------------------------------------------------------------------------------------------------

// v1's debug checkbox logged every run; it counts only while Logging is at its default.
function logTypeSetting() {
  const logType = textParam(data.logType) || 'debug';
  return logType === 'debug' && isChecked(data.debug) ? 'always' : logType;
}

function isLoggingEnabled() {
  const logType = logTypeSetting();
  if (logType === 'always') {
    return true;
  }
  if (logType !== 'debug') {
    return false;
  }
  const container = getContainerVersion();
  return !!(container && (container.debugMode || container.previewMode));
}

const LOGGING = isLoggingEnabled();
const TRACE_ID = LOGGING ? getRequestHeader('trace-id') : undefined;

function writeLog(entry) {
  if (LOGGING) {
    logToConsole(JSON.stringify(entry));
  }
}

function logSkip(eventName, reason) {
  writeLog({Name: 'Multibuzz', Type: 'Skip', TraceId: TRACE_ID, EventName: eventName, Reason: reason});
}

function withoutUserData(payload) {
  const copy = {};
  const keys = Object.keys(payload);
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] !== 'user_data') {
      copy[keys[i]] = payload[keys[i]];
    }
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------------------------
// Consent (SGTM-7, SGTM-8)
// ---------------------------------------------------------------------------------------------------------------

function isGcs(value) {
  if (getType(value) !== 'string' || value.length !== 4) {
    return false;
  }
  if (value.charAt(0) !== 'G' || value.charAt(1) !== '1') {
    return false;
  }
  return '01-'.indexOf(value.charAt(2)) >= 0 && '01-'.indexOf(value.charAt(3)) >= 0;
}

function gcsFlag(character) {
  if (character === '1') {
    return 'granted';
  }
  if (character === '0') {
    return 'denied';
  }
  return 'unknown';
}

function stateFlag(value) {
  if (value === true || value === 'granted') {
    return 'granted';
  }
  if (value === false || value === 'denied') {
    return 'denied';
  }
  return 'unknown';
}

function readConsentSignal() {
  const signal = {analytics: 'unknown', ad: 'unknown', source: 'none', gcs: undefined};
  const gcs = readEvent('x-ga-gcs');
  if (gcs !== undefined) {
    signal.gcs = makeString(gcs);
  }
  if (isGcs(signal.gcs)) {
    signal.ad = gcsFlag(signal.gcs.charAt(2));
    signal.analytics = gcsFlag(signal.gcs.charAt(3));
    signal.source = 'gcs';
    return signal;
  }
  const state = readEvent('consent_state');
  if (getType(state) === 'object') {
    signal.analytics = stateFlag(state.analytics_storage);
    signal.ad = stateFlag(state.ad_storage);
    signal.source = 'consent_state';
  }
  return signal;
}

function decideConsent(signal) {
  const policy = data.consentPolicy || 'honour_signal';
  const allowed = signal.analytics === 'granted' || (signal.analytics === 'unknown' && policy === 'honour_signal');
  let analytics = 'denied';
  if (allowed) {
    analytics = signal.analytics === 'granted' ? 'granted' : 'unknown';
  }
  const consent = {analytics_storage: analytics, ad_storage: signal.ad};
  if (signal.gcs !== undefined) {
    consent.gcs = signal.gcs;
  }
  consent.source = signal.source;
  return {allowed: allowed, payload: consent};
}

// ---------------------------------------------------------------------------------------------------------------
// Call resolution (SGTM-10)
// ---------------------------------------------------------------------------------------------------------------

function listedIn(list, name) {
  const parts = textParam(list).split(',');
  for (let i = 0; i < parts.length; i++) {
    if (parts[i].trim() !== '' && parts[i].trim() === name) {
      return true;
    }
  }
  return false;
}

// Explicit mode's call type; else a v1 tag's call type (SGTM-4-D1); '' means auto mode.
function explicitCallType() {
  if (data.callMode === 'explicit') {
    return textParam(data.explicitCall) || 'event';
  }
  const v1CallType = textParam(data.callType);
  return V1_CALL_TYPES.indexOf(v1CallType) >= 0 ? v1CallType : '';
}

function resolveCall(eventName) {
  const resolved = {call: 'auto', skip: false, explicit: false};
  const explicitCall = explicitCallType();
  if (explicitCall !== '') {
    resolved.explicit = true;
    resolved.call = explicitCall;
    const name = textParam(data.explicitName) || textParam(data.eventType) || eventName;
    if (resolved.call === 'event') {
      resolved.eventType = name;
    } else if (resolved.call === 'conversion') {
      resolved.conversionType = name;
    } else if (resolved.call === 'identify') {
      const userId = textParam(data.explicitUserId) || textParam(data.userId);
      const eventUserId = readEvent('user_id');
      resolved.userId = userId !== '' ? userId : (eventUserId === undefined ? '' : makeString(eventUserId));
    }
    return resolved;
  }
  const rows = getType(data.eventMap) === 'array' ? data.eventMap : [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (getType(row) === 'object' && textParam(row.ga4Event) === eventName) {
      const kind = textParam(row.kind) || 'event';
      if (kind === 'skip') {
        resolved.skip = true;
        return resolved;
      }
      resolved.call = kind;
      const typeName = textParam(row.name) || eventName;
      if (kind === 'event') {
        resolved.eventType = typeName;
      } else if (kind === 'conversion') {
        resolved.conversionType = typeName;
      }
      return resolved;
    }
  }
  if (listedIn(data.conversionEvents, eventName)) {
    resolved.call = 'conversion';
    resolved.conversionType = eventName;
  }
  return resolved;
}

function isConversionKind(resolved, eventName) {
  if (resolved.call === 'conversion') {
    return true;
  }
  return resolved.call === 'auto' && CONVERSION_EVENT_NAMES.indexOf(eventName) >= 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Visitor cookie (SGTM-9)
// ---------------------------------------------------------------------------------------------------------------

function resolveVisitorId(clientId) {
  const values = getCookieValues(COOKIE_NAME);
  if (getType(values) === 'array' && values.length > 0 && isHex64(values[0])) {
    return values[0];
  }
  if (clientId !== undefined) {
    return sha256Hex('ga:' + makeString(clientId));
  }
  return sha256Hex(getTimestampMillis() + ':' + generateRandom(0, 2147483647) + ':' + generateRandom(0, 2147483647));
}

function cookieOptions() {
  let days = makeInteger(data.cookieMaxAgeDays);
  if (!(days > 0)) {
    days = MAX_COOKIE_DAYS;
  }
  days = Math.min(days, MAX_COOKIE_DAYS);
  return {
    domain: textParam(data.cookieDomain) || 'auto',
    path: textParam(data.cookiePath) || '/',
    'max-age': days * SECONDS_PER_DAY,
    secure: true,
    samesite: 'Lax',
    httpOnly: isChecked(data.cookieHttpOnly)
  };
}

function setVisitorCookie(visitorId) {
  setCookie(COOKIE_NAME, visitorId, cookieOptions());
}

// ---------------------------------------------------------------------------------------------------------------
// Payload (SGTM-11, SGTM-12)
// ---------------------------------------------------------------------------------------------------------------

function reduceItems(items) {
  if (getType(items) !== 'array') {
    return undefined;
  }
  const first = items.slice(0, MAX_ITEMS);
  const reduced = [];
  for (let i = 0; i < first.length; i++) {
    const item = first[i];
    if (getType(item) === 'object') {
      const entry = {};
      for (let k = 0; k < ITEM_KEYS.length; k++) {
        put(entry, ITEM_KEYS[k], item[ITEM_KEYS[k]]);
      }
      reduced.push(entry);
    }
  }
  return reduced.length > 0 ? reduced : undefined;
}

function normalizePhone(value) {
  const text = makeString(value).trim();
  let result = '';
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const character = text.charAt(i);
    if (character === '+' && result === '') {
      result = '+';
    } else if (DECIMAL_DIGITS.indexOf(character) >= 0) {
      result = result + character;
      digits = digits + 1;
    }
  }
  return digits > 0 ? result : '';
}

function hashedUserData(userData) {
  if (getType(userData) !== 'object') {
    return undefined;
  }
  const hashed = {};
  const emailHash = firstValue(userData.sha256_email_address);
  if (getType(emailHash) === 'string' && isHex64(emailHash.toLowerCase())) {
    hashed.email_sha256 = emailHash.toLowerCase();
  } else {
    let email = firstValue(userData.email_address);
    if (isAbsent(email)) {
      email = firstValue(userData.email);
    }
    if (!isAbsent(email)) {
      const normalized = makeString(email).trim().toLowerCase();
      if (normalized !== '') {
        hashed.email_sha256 = sha256Hex(normalized);
      }
    }
  }
  const phoneHash = firstValue(userData.sha256_phone_number);
  if (getType(phoneHash) === 'string' && isHex64(phoneHash.toLowerCase())) {
    hashed.phone_sha256 = phoneHash.toLowerCase();
  } else {
    const phone = firstValue(userData.phone_number);
    if (!isAbsent(phone)) {
      const normalizedPhone = normalizePhone(phone);
      if (normalizedPhone !== '') {
        hashed.phone_sha256 = sha256Hex(normalizedPhone);
      }
    }
  }
  return Object.keys(hashed).length > 0 ? hashed : undefined;
}

function customProperties() {
  const rows = getType(data.customProperties) === 'array' ? data.customProperties : [];
  const properties = {};
  let count = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (getType(row) === 'object') {
      const key = textParam(row.key);
      if (key !== '') {
        properties[key] = isAbsent(row.value) ? '' : makeString(row.value);
        count = count + 1;
      }
    }
  }
  return count > 0 ? properties : undefined;
}

function eventValue() {
  const value = toNumber(readEvent('value'));
  if (value !== undefined) {
    return value;
  }
  return toNumber(readEvent('x-ga-mp1-tr'));
}

function strippedLocation(location) {
  if (location === undefined) {
    return undefined;
  }
  const url = parseUrl(makeString(location));
  if (!url || !url.protocol || !url.host) {
    return undefined;
  }
  return url.protocol + '//' + url.host + (url.pathname || '/');
}

// An explicit conversion takes a v1 tag's revenue and currency when the event data carries none (SGTM-4-D1).
function addCommerce(payload, resolved) {
  const explicitConversion = resolved.explicit && resolved.call === 'conversion';
  let value = eventValue();
  if (value === undefined && explicitConversion) {
    value = toNumber(data.revenue);
  }
  put(payload, 'value', value);
  let currency = readEvent('currency');
  if (currency === undefined && explicitConversion) {
    currency = textParam(data.currency) || undefined;
  }
  if (currency !== undefined) {
    put(payload, 'currency', makeString(currency).toUpperCase());
  }
  put(payload, 'transaction_id', readEvent('transaction_id'));
  put(payload, 'tax', toNumber(readEvent('tax')));
  put(payload, 'shipping', toNumber(readEvent('shipping')));
  put(payload, 'coupon', readEvent('coupon'));
  put(payload, 'items', reduceItems(readEvent('items')));
}

function addCallFields(payload, resolved) {
  put(payload, 'event_type', resolved.eventType);
  put(payload, 'conversion_type', resolved.conversionType);
  if (resolved.call === 'identify' && resolved.explicit) {
    put(payload, 'user_id', resolved.userId);
  }
  put(payload, 'properties', customProperties());
}

function buildAllowedPayload(eventName, resolved, visitorId, clientId, consent) {
  const payload = {v: 1, template_version: TEMPLATE_VERSION, call: resolved.call, event_name: eventName};
  payload.timestamp_ms = getTimestampMillis();
  put(payload, 'visitor_id', visitorId);
  put(payload, 'ga_client_id', clientId);
  payload.consent = consent;
  put(payload, 'event_id', readEvent('event_id'));
  const sessionId = readEvent('ga_session_id');
  if (sessionId !== undefined) {
    put(payload, 'ga_session_id', makeString(sessionId));
  }
  put(payload, 'ga_session_number', toNumber(readEvent('ga_session_number')));
  put(payload, 'user_id', readEvent('user_id'));
  put(payload, 'page_location', readEvent('page_location'));
  put(payload, 'page_referrer', readEvent('page_referrer'));
  put(payload, 'page_title', readEvent('page_title'));
  put(payload, 'language', readEvent('language'));
  let ip = readEvent('ip_override');
  if (ip === undefined) {
    ip = getRemoteAddress();
  }
  put(payload, 'ip', ip);
  let userAgent = readEvent('user_agent');
  if (userAgent === undefined) {
    userAgent = getRequestHeader('user-agent');
  }
  put(payload, 'user_agent', userAgent);
  addCommerce(payload, resolved);
  put(payload, 'user_data', hashedUserData(readEvent('user_data')));
  put(payload, 'search_term', readEvent('search_term'));
  put(payload, 'method', readEvent('method'));
  addCallFields(payload, resolved);
  return payload;
}

function buildDeniedPayload(eventName, resolved, consent) {
  const payload = {v: 1, template_version: TEMPLATE_VERSION, call: resolved.call, event_name: eventName};
  put(payload, 'event_id', readEvent('event_id'));
  payload.timestamp_ms = getTimestampMillis();
  put(payload, 'page_location', strippedLocation(readEvent('page_location')));
  addCommerce(payload, resolved);
  addCallFields(payload, resolved);
  payload.consent = consent;
  return payload;
}

// ---------------------------------------------------------------------------------------------------------------
// Request and answer (SGTM-13, SGTM-14)
// ---------------------------------------------------------------------------------------------------------------

function withoutTrailingSlashes(url) {
  let result = url;
  while (result.length > 0 && result.charAt(result.length - 1) === '/') {
    result = result.slice(0, result.length - 1);
  }
  return result;
}

// A v1 tag's API URL, when changed from v1's default, names the host of the collect endpoint (SGTM-4-D1).
function v1CollectUrl() {
  let base = withoutTrailingSlashes(textParam(data.apiUrl));
  if (base === '' || base === V1_DEFAULT_API_URL) {
    return '';
  }
  if (base.slice(base.length - V1_API_PATH.length) === V1_API_PATH) {
    base = base.slice(0, base.length - V1_API_PATH.length);
  }
  return base + COLLECT_PATH;
}

function collectUrl() {
  const configured = textParam(data.endpointUrl);
  const fromV1 = v1CollectUrl();
  if (fromV1 !== '' && (configured === '' || configured === HOSTED_COLLECT_URL)) {
    return fromV1;
  }
  return configured !== '' ? configured : HOSTED_COLLECT_URL;
}

function parseAnswer(body) {
  if (getType(body) !== 'string' || body.trim().charAt(0) !== '{') {
    return undefined;
  }
  const answer = JSON.parse(body);
  return getType(answer) === 'object' ? answer : undefined;
}

function send(eventName, payload, allowed, visitorId) {
  const optimistic = isChecked(data.optimistic);
  const url = collectUrl();
  let timeout = makeInteger(data.timeoutMs);
  if (!(timeout > 0)) {
    timeout = DEFAULT_TIMEOUT_MS;
  }
  const options = {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Authorization': 'Bearer ' + makeString(data.apiKey),
      'User-Agent': 'mbuzz-sgtm/' + TEMPLATE_VERSION
    },
    timeout: timeout
  };
  writeLog({
    Name: 'Multibuzz',
    Type: 'Request',
    TraceId: TRACE_ID,
    EventName: eventName,
    RequestMethod: 'POST',
    RequestUrl: url,
    RequestBody: withoutUserData(payload)
  });
  sendHttpRequest(url, function (statusCode, headers, body) {
    writeLog({
      Name: 'Multibuzz',
      Type: 'Response',
      TraceId: TRACE_ID,
      EventName: eventName,
      ResponseStatusCode: statusCode,
      ResponseBody: body
    });
    if (optimistic) {
      return;
    }
    if (statusCode >= 200 && statusCode < 300) {
      if (allowed) {
        const answer = parseAnswer(body);
        if (answer && isHex64(answer.visitor_id) && answer.visitor_id !== visitorId) {
          setVisitorCookie(answer.visitor_id);
        }
      }
      data.gtmOnSuccess();
    } else {
      data.gtmOnFailure();
    }
  }, options, JSON.stringify(payload));
  if (optimistic) {
    data.gtmOnSuccess();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Main (SGTM-6)
// ---------------------------------------------------------------------------------------------------------------

const rawEventName = readEvent('event_name');
if (rawEventName === undefined) {
  logSkip(undefined, 'missing_event_name');
  data.gtmOnFailure();
  return;
}
const eventName = makeString(rawEventName);

if (startsWith(readEvent('page_location'), MEASUREMENT_TEST_PREFIX)) {
  logSkip(eventName, 'measurement_test');
  data.gtmOnSuccess();
  return;
}

const resolved = resolveCall(eventName);
if (resolved.skip) {
  logSkip(eventName, 'event_map_skip');
  data.gtmOnSuccess();
  return;
}
if (resolved.explicit && resolved.call === 'identify' && resolved.userId === '') {
  logSkip(eventName, 'missing_user_id');
  data.gtmOnSuccess();
  return;
}

const consent = decideConsent(readConsentSignal());
if (!consent.allowed && !isConversionKind(resolved, eventName)) {
  logSkip(eventName, 'consent_denied');
  data.gtmOnSuccess();
  return;
}

if (consent.allowed) {
  const clientId = readEvent('client_id');
  const visitorId = resolveVisitorId(clientId);
  setVisitorCookie(visitorId);
  send(eventName, buildAllowedPayload(eventName, resolved, visitorId, clientId, consent.payload), true, visitorId);
} else {
  send(eventName, buildDeniedPayload(eventName, resolved, consent.payload), false, undefined);
}


___SERVER_PERMISSIONS___

[
  {
    "instance": {
      "key": {
        "publicId": "read_event_data",
        "versionId": "1"
      },
      "param": [
        {
          "key": "eventDataAccess",
          "value": {
            "type": 1,
            "string": "specific"
          }
        },
        {
          "key": "keyPatterns",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 1,
                "string": "event_name"
              },
              {
                "type": 1,
                "string": "event_id"
              },
              {
                "type": 1,
                "string": "client_id"
              },
              {
                "type": 1,
                "string": "ga_session_id"
              },
              {
                "type": 1,
                "string": "ga_session_number"
              },
              {
                "type": 1,
                "string": "user_id"
              },
              {
                "type": 1,
                "string": "page_location"
              },
              {
                "type": 1,
                "string": "page_referrer"
              },
              {
                "type": 1,
                "string": "page_title"
              },
              {
                "type": 1,
                "string": "language"
              },
              {
                "type": 1,
                "string": "ip_override"
              },
              {
                "type": 1,
                "string": "user_agent"
              },
              {
                "type": 1,
                "string": "value"
              },
              {
                "type": 1,
                "string": "currency"
              },
              {
                "type": 1,
                "string": "transaction_id"
              },
              {
                "type": 1,
                "string": "tax"
              },
              {
                "type": 1,
                "string": "shipping"
              },
              {
                "type": 1,
                "string": "coupon"
              },
              {
                "type": 1,
                "string": "items"
              },
              {
                "type": 1,
                "string": "user_data"
              },
              {
                "type": 1,
                "string": "search_term"
              },
              {
                "type": 1,
                "string": "method"
              },
              {
                "type": 1,
                "string": "x-ga-gcs"
              },
              {
                "type": 1,
                "string": "x-ga-mp1-tr"
              },
              {
                "type": 1,
                "string": "consent_state"
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "get_cookies",
        "versionId": "1"
      },
      "param": [
        {
          "key": "cookieAccess",
          "value": {
            "type": 1,
            "string": "specific"
          }
        },
        {
          "key": "cookieNames",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 1,
                "string": "_mbuzz_vid"
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "set_cookies",
        "versionId": "1"
      },
      "param": [
        {
          "key": "allowedCookies",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 3,
                "mapKey": [
                  {
                    "type": 1,
                    "string": "name"
                  },
                  {
                    "type": 1,
                    "string": "domain"
                  },
                  {
                    "type": 1,
                    "string": "path"
                  },
                  {
                    "type": 1,
                    "string": "secure"
                  },
                  {
                    "type": 1,
                    "string": "session"
                  }
                ],
                "mapValue": [
                  {
                    "type": 1,
                    "string": "_mbuzz_vid"
                  },
                  {
                    "type": 1,
                    "string": "*"
                  },
                  {
                    "type": 1,
                    "string": "*"
                  },
                  {
                    "type": 1,
                    "string": "any"
                  },
                  {
                    "type": 1,
                    "string": "any"
                  }
                ]
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "send_http",
        "versionId": "1"
      },
      "param": [
        {
          "key": "allowedUrls",
          "value": {
            "type": 1,
            "string": "specific"
          }
        },
        {
          "key": "urls",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 1,
                "string": "https://*.mbuzz.co/*"
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "read_request",
        "versionId": "1"
      },
      "param": [
        {
          "key": "requestAccess",
          "value": {
            "type": 1,
            "string": "specific"
          }
        },
        {
          "key": "headerAccess",
          "value": {
            "type": 1,
            "string": "specific"
          }
        },
        {
          "key": "headersAllowed",
          "value": {
            "type": 8,
            "boolean": true
          }
        },
        {
          "key": "headerWhitelist",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 3,
                "mapKey": [
                  {
                    "type": 1,
                    "string": "headerName"
                  }
                ],
                "mapValue": [
                  {
                    "type": 1,
                    "string": "user-agent"
                  }
                ]
              },
              {
                "type": 3,
                "mapKey": [
                  {
                    "type": 1,
                    "string": "headerName"
                  }
                ],
                "mapValue": [
                  {
                    "type": 1,
                    "string": "trace-id"
                  }
                ]
              }
            ]
          }
        },
        {
          "key": "remoteAddressAllowed",
          "value": {
            "type": 8,
            "boolean": true
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "read_container_data",
        "versionId": "1"
      },
      "param": []
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "logging",
        "versionId": "1"
      },
      "param": [
        {
          "key": "environments",
          "value": {
            "type": 1,
            "string": "all"
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  }
]


___TESTS___

scenarios:
- name: purchase auto sends one request with the expected body
  code: |-
    runCode(mockData);

    assertApi('getAllEventData').wasNotCalled();
    assertApi('sendHttpRequest').wasCalled();
    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].url).isEqualTo(ENDPOINT);
    assertThat(requests[0].options).isEqualTo(REQUEST_OPTIONS);
    assertThat(requests[0].body).isEqualTo(expectedBody);
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT, COOKIE_OPTIONS);
    assertApi('gtmOnSuccess').wasCalled();
    assertApi('gtmOnFailure').wasNotCalled();
- name: existing valid cookie is used and refreshed
  code: |-
    cookieValues = [EXISTING_VISITOR];

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.visitor_id).isEqualTo(EXISTING_VISITOR);
    assertThat(requests[0].body.ga_client_id).isEqualTo('1234567890.1716172800');
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', EXISTING_VISITOR, COOKIE_OPTIONS);
    assertApi('setCookie').wasNotCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT, COOKIE_OPTIONS);
    assertApi('gtmOnSuccess').wasCalled();
- name: no cookie derives the visitor from client_id
  code: |-
    cookieValues = [];

    runCode(mockData);

    assertThat(requests[0].body.visitor_id).isEqualTo(VISITOR_FROM_CLIENT);
    assertApi('generateRandom').wasNotCalled();
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT, COOKIE_OPTIONS);
    assertApi('gtmOnSuccess').wasCalled();
- name: no cookie and no client_id generates 64 hex
  code: |-
    mockEvent.client_id = undefined;

    runCode(mockData);

    const visitorId = requests[0].body.visitor_id;
    assertThat(isLowerHex64(visitorId)).isTrue();
    assertThat(visitorId).isNotEqualTo(VISITOR_FROM_CLIENT);
    assertThat(requests[0].body.ga_client_id).isUndefined();
    assertApi('generateRandom').wasCalled();
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', visitorId, COOKIE_OPTIONS);
    assertApi('gtmOnSuccess').wasCalled();
- name: malformed cookie value is ignored
  code: |-
    cookieValues = ['2044FC0995811B622A40772D1D8A0F469A0E021E5EF6BDAABF4CDE9A818EE1E3', 'not-a-visitor-id'];

    runCode(mockData);

    assertThat(requests[0].body.visitor_id).isEqualTo(VISITOR_FROM_CLIENT);
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT, COOKIE_OPTIONS);

    cookieValues = ['abc123'];
    runCode(mockData);
    assertThat(requests[1].body.visitor_id).isEqualTo(VISITOR_FROM_CLIENT);
- name: denied purchase sends no identifiers and sets no cookie
  code: |-
    mockEvent['x-ga-gcs'] = 'G100';

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    const body = requests[0].body;
    assertThat(body.call).isEqualTo('auto');
    assertThat(body.event_name).isEqualTo('purchase');
    assertThat(body.consent).isEqualTo({analytics_storage: 'denied', ad_storage: 'denied', gcs: 'G100', source: 'gcs'});
    assertThat(body.page_location).isEqualTo('https://shop.example.com/checkout/thank-you');
    assertThat(body.value).isEqualTo(249);
    assertThat(body.currency).isEqualTo('AUD');
    assertThat(body.transaction_id).isEqualTo('ORD-20260520-0042');
    assertThat(body.items).isEqualTo(expectedBody.items);
    assertThat(body.visitor_id).isUndefined();
    assertThat(body.ga_client_id).isUndefined();
    assertThat(body.ga_session_id).isUndefined();
    assertThat(body.ga_session_number).isUndefined();
    assertThat(body.user_id).isUndefined();
    assertThat(body.page_referrer).isUndefined();
    assertThat(body.page_title).isUndefined();
    assertThat(body.language).isUndefined();
    assertThat(body.ip).isUndefined();
    assertThat(body.user_agent).isUndefined();
    assertThat(body.user_data).isUndefined();
    assertApi('getCookieValues').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
    assertApi('gtmOnSuccess').wasCalled();
- name: denied page_view sends nothing and succeeds
  code: |-
    mockEvent['x-ga-gcs'] = 'G100';
    mockEvent.event_name = 'page_view';

    runCode(mockData);

    assertApi('sendHttpRequest').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
    assertApi('gtmOnSuccess').wasCalled();
    assertApi('gtmOnFailure').wasNotCalled();
- name: require_granted without signal behaves as denied
  code: |-
    mockEvent['x-ga-gcs'] = undefined;
    mockData.consentPolicy = 'require_granted';

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.consent).isEqualTo({analytics_storage: 'denied', ad_storage: 'unknown', source: 'none'});
    assertThat(requests[0].body.visitor_id).isUndefined();
    assertThat(requests[0].body.user_id).isUndefined();
    assertApi('setCookie').wasNotCalled();

    mockEvent.event_name = 'page_view';
    runCode(mockData);
    assertThat(requests.length).isEqualTo(1);
    assertApi('gtmOnSuccess').wasCalled();
- name: consent_state object is honoured when x-ga-gcs is absent
  code: |-
    mockEvent['x-ga-gcs'] = undefined;
    mockEvent.consent_state = {analytics_storage: true, ad_storage: 'denied'};
    mockData.consentPolicy = 'require_granted';

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.consent).isEqualTo({analytics_storage: 'granted', ad_storage: 'denied', source: 'consent_state'});
    assertThat(requests[0].body.visitor_id).isEqualTo(VISITOR_FROM_CLIENT);

    mockEvent.consent_state = {analytics_storage: 'denied', ad_storage: false};
    mockData.consentPolicy = 'honour_signal';
    mockEvent.event_name = 'page_view';
    runCode(mockData);
    assertThat(requests.length).isEqualTo(1);
    assertApi('gtmOnSuccess').wasCalled();
- name: measurement test ping is skipped
  code: |-
    mockEvent.page_location = 'https://gtm-msr.appspot.com/render?id=GTM-TEST';

    runCode(mockData);

    assertApi('sendHttpRequest').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
    assertApi('gtmOnSuccess').wasCalled();
    assertApi('gtmOnFailure').wasNotCalled();
- name: explicit identify with empty user id is skipped
  code: |-
    mockData.callMode = 'explicit';
    mockData.explicitCall = 'identify';
    mockData.explicitUserId = '';
    mockEvent.user_id = undefined;

    runCode(mockData);

    assertApi('sendHttpRequest').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
    assertApi('gtmOnSuccess').wasCalled();
    assertApi('gtmOnFailure').wasNotCalled();
- name: explicit conversion sets call and conversion_type
  code: |-
    mockData.callMode = 'explicit';
    mockData.explicitCall = 'conversion';
    mockData.explicitName = 'demo_booked';
    mockEvent.event_name = 'form_submit';

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.call).isEqualTo('conversion');
    assertThat(requests[0].body.conversion_type).isEqualTo('demo_booked');
    assertThat(requests[0].body.event_type).isUndefined();
    assertThat(requests[0].body.event_name).isEqualTo('form_submit');

    mockData.explicitName = '';
    mockEvent['x-ga-gcs'] = 'G100';
    runCode(mockData);
    assertThat(requests.length).isEqualTo(2);
    assertThat(requests[1].body.conversion_type).isEqualTo('form_submit');
    assertThat(requests[1].body.visitor_id).isUndefined();
    assertApi('gtmOnSuccess').wasCalled();
- name: eventMap skip row suppresses the event
  code: |-
    mockData.eventMap = [
      {ga4Event: 'view_item', kind: 'event', name: 'product_seen'},
      {ga4Event: 'purchase', kind: 'skip', name: ''}
    ];

    runCode(mockData);

    assertApi('sendHttpRequest').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
    assertApi('gtmOnSuccess').wasCalled();

    mockEvent.event_name = 'view_item';
    runCode(mockData);
    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.call).isEqualTo('event');
    assertThat(requests[0].body.event_type).isEqualTo('product_seen');
- name: conversionEvents turns a custom event into a conversion
  code: |-
    mockData.conversionEvents = 'book_demo, request_quote';
    mockEvent.event_name = 'request_quote';

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertThat(requests[0].body.call).isEqualTo('conversion');
    assertThat(requests[0].body.conversion_type).isEqualTo('request_quote');

    mockEvent.event_name = 'newsletter_open';
    runCode(mockData);
    assertThat(requests[1].body.call).isEqualTo('auto');
    assertThat(requests[1].body.conversion_type).isUndefined();
- name: raw email is hashed and never sent
  code: |-
    mockEvent.user_data = {email_address: '  Jane.Doe@Example.com ', phone_number: '+61 400 000 000'};

    runCode(mockData);

    assertThat(requests[0].body.user_data).isEqualTo({email_sha256: EMAIL_SHA256, phone_sha256: PHONE_SHA256});
    assertThat(requests[0].raw.indexOf('Jane.Doe')).isEqualTo(-1);
    assertThat(requests[0].raw.indexOf('jane.doe')).isEqualTo(-1);
    assertThat(requests[0].raw.indexOf('400 000')).isEqualTo(-1);
    assertThat(requests[0].raw.indexOf('+61400000000')).isEqualTo(-1);
- name: items are capped at 50 and reduced to allowed keys
  code: |-
    const manyItems = [];
    for (let i = 0; i < 60; i++) {
      manyItems.push({
        item_id: 'SKU-' + i, item_name: 'Item ' + i, price: 10, quantity: 2, item_brand: 'Brand',
        item_category: 'Category', item_variant: 'Oak', affiliation: 'Online Store', index: i, discount: 1
      });
    }
    mockEvent.items = manyItems;

    runCode(mockData);

    const items = requests[0].body.items;
    assertThat(items.length).isEqualTo(50);
    assertThat(items[0]).isEqualTo({
      item_id: 'SKU-0', item_name: 'Item 0', price: 10, quantity: 2, item_brand: 'Brand', item_category: 'Category',
      item_variant: 'Oak'
    });
    assertThat(items[49].item_id).isEqualTo('SKU-49');
    assertThat(items[49].affiliation).isUndefined();
    assertThat(items[49].index).isUndefined();
- name: non-2xx answer calls gtmOnFailure
  code: |-
    responseStatus = 500;

    runCode(mockData);

    assertApi('sendHttpRequest').wasCalled();
    assertApi('gtmOnFailure').wasCalled();
    assertApi('gtmOnSuccess').wasNotCalled();
- name: optimistic mode succeeds before the answer
  code: |-
    mockData.optimistic = true;
    let pendingCallback;
    mock('sendHttpRequest', function (url, callback, options, body) {
      requests.push({url: url, options: options, body: JSON.parse(body), raw: body});
      pendingCallback = callback;
    });

    runCode(mockData);

    assertThat(requests.length).isEqualTo(1);
    assertApi('gtmOnSuccess').wasCalled();
    assertApi('gtmOnFailure').wasNotCalled();
    pendingCallback(500, {}, '');
    assertApi('gtmOnFailure').wasNotCalled();
- name: answer with a different visitor_id re-sets the cookie
  code: |-
    responseVisitorId = OTHER_VISITOR;

    runCode(mockData);

    assertThat(requests[0].body.visitor_id).isEqualTo(VISITOR_FROM_CLIENT);
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT, COOKIE_OPTIONS);
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', OTHER_VISITOR, COOKIE_OPTIONS);
    assertApi('gtmOnSuccess').wasCalled();
- name: api key and user_data never appear in logs
  code: |-
    mockData.logType = 'always';
    mockEvent.user_data = {email_address: 'jane.doe@example.com'};

    runCode(mockData);

    assertThat(logs.length).isEqualTo(2);
    assertThat(JSON.parse(logs[0]).Type).isEqualTo('Request');
    assertThat(JSON.parse(logs[0]).TraceId).isEqualTo('trace-0001');
    assertThat(JSON.parse(logs[1]).Type).isEqualTo('Response');
    assertThat(JSON.parse(logs[1]).ResponseStatusCode).isEqualTo(202);
    for (let i = 0; i < logs.length; i++) {
      assertThat(logs[i].indexOf(API_KEY)).isEqualTo(-1);
      assertThat(logs[i].indexOf('Bearer')).isEqualTo(-1);
      assertThat(logs[i].indexOf('Authorization')).isEqualTo(-1);
      assertThat(logs[i].indexOf('user_data')).isEqualTo(-1);
      assertThat(logs[i].indexOf(EMAIL_SHA256)).isEqualTo(-1);
      assertThat(logs[i].indexOf('jane.doe')).isEqualTo(-1);
    }
    assertThat(requests[0].body.user_data).isEqualTo({email_sha256: EMAIL_SHA256});

    mockData.logType = 'no';
    runCode(mockData);
    assertThat(logs.length).isEqualTo(2);
- name: cookieHttpOnly and cookieMaxAgeDays reach setCookie
  code: |-
    mockData.cookieHttpOnly = true;
    mockData.cookieMaxAgeDays = '30';
    mockData.cookieDomain = 'shop.example.com';

    runCode(mockData);

    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT,
      {domain: 'shop.example.com', path: '/', 'max-age': 2592000, secure: true, samesite: 'Lax', httpOnly: true});

    mockData.cookieMaxAgeDays = '999';
    runCode(mockData);
    assertApi('setCookie').wasCalledWith('_mbuzz_vid', VISITOR_FROM_CLIENT,
      {domain: 'shop.example.com', path: '/', 'max-age': 63072000, secure: true, samesite: 'Lax', httpOnly: true});
- name: missing event_name calls gtmOnFailure
  code: |-
    mockEvent.event_name = undefined;

    runCode(mockData);

    assertApi('gtmOnFailure').wasCalled();
    assertApi('gtmOnSuccess').wasNotCalled();
    assertApi('sendHttpRequest').wasNotCalled();
    assertApi('setCookie').wasNotCalled();
setup: |-
  const JSON = require('JSON');

  const API_KEY = 'pk_sgtm_live_8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a';
  const ENDPOINT = 'https://api.mbuzz.co/sgtm/v1/collect';
  const NOW_MS = 1779247200000;
  const VISITOR_FROM_CLIENT = '2044fc0995811b622a40772d1d8a0f469a0e021e5ef6bdaabf4cde9a818ee1e3';
  const EXISTING_VISITOR = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
  const OTHER_VISITOR = '60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752';
  const EMAIL_SHA256 = '86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d';
  const PHONE_SHA256 = 'a8f5e1a95c2cfb653d3133ecc02e2ac4f14b123d47d0371be9bc5c208be425d8';
  const USER_AGENT = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36';
  const COOKIE_OPTIONS = {domain: 'auto', path: '/', 'max-age': 63072000, secure: true, samesite: 'Lax', httpOnly: false};
  const REQUEST_OPTIONS = {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + API_KEY, 'User-Agent': 'mbuzz-sgtm/2.0.0'},
    timeout: 5000
  };

  const mockData = {
    apiKey: API_KEY,
    endpointUrl: ENDPOINT,
    callMode: 'auto',
    explicitCall: 'event',
    explicitName: '',
    explicitUserId: '',
    eventMap: [],
    conversionEvents: '',
    customProperties: [],
    consentPolicy: 'honour_signal',
    cookieDomain: 'auto',
    cookiePath: '/',
    cookieHttpOnly: false,
    cookieMaxAgeDays: '730',
    logType: 'no',
    optimistic: false,
    timeoutMs: '5000'
  };

  // The F14 event data.
  const mockEvent = {
    event_name: 'purchase',
    client_id: '1234567890.1716172800',
    ga_session_id: '1779246900',
    ga_session_number: 3,
    user_id: 'crm_48213',
    page_location: 'https://shop.example.com/checkout/thank-you?order=ORD-20260520-0042',
    page_referrer: 'https://shop.example.com/checkout/payment',
    page_title: 'Thank you',
    page_hostname: 'shop.example.com',
    language: 'en-au',
    ip_override: '198.51.100.23',
    user_agent: USER_AGENT,
    transaction_id: 'ORD-20260520-0042',
    value: 249.0,
    currency: 'AUD',
    tax: 22.64,
    shipping: 0,
    coupon: 'WELCOME10',
    items: [{
      item_id: 'SKU-TBL-01',
      item_name: 'Walnut Side Table',
      price: 249.0,
      quantity: 1,
      item_brand: 'Northwood',
      item_category: 'Furniture',
      affiliation: 'Online Store'
    }],
    user_data: {sha256_email_address: EMAIL_SHA256},
    event_id: 'evt_5e3b9c1f',
    'x-ga-protocol_version': '2',
    'x-ga-measurement_id': 'G-ABC123XYZ',
    'x-ga-page_id': 1455013022,
    'x-ga-gcs': 'G111'
  };

  // The body of F14.expected.json (endpoint aside).
  const expectedBody = {
    v: 1,
    template_version: '2.0.0',
    call: 'auto',
    event_name: 'purchase',
    timestamp_ms: NOW_MS,
    visitor_id: VISITOR_FROM_CLIENT,
    ga_client_id: '1234567890.1716172800',
    consent: {analytics_storage: 'granted', ad_storage: 'granted', gcs: 'G111', source: 'gcs'},
    event_id: 'evt_5e3b9c1f',
    ga_session_id: '1779246900',
    ga_session_number: 3,
    user_id: 'crm_48213',
    page_location: 'https://shop.example.com/checkout/thank-you?order=ORD-20260520-0042',
    page_referrer: 'https://shop.example.com/checkout/payment',
    page_title: 'Thank you',
    language: 'en-au',
    ip: '198.51.100.23',
    user_agent: USER_AGENT,
    value: 249.0,
    currency: 'AUD',
    transaction_id: 'ORD-20260520-0042',
    tax: 22.64,
    shipping: 0,
    coupon: 'WELCOME10',
    items: [{
      item_id: 'SKU-TBL-01',
      item_name: 'Walnut Side Table',
      price: 249.0,
      quantity: 1,
      item_brand: 'Northwood',
      item_category: 'Furniture'
    }],
    user_data: {email_sha256: EMAIL_SHA256}
  };

  const requestHeaders = {'user-agent': USER_AGENT, 'trace-id': 'trace-0001'};
  let cookieValues = [];
  let responseStatus = 202;
  let responseVisitorId;
  const requests = [];
  const logs = [];

  function isLowerHex64(value) {
    if (!value || value.length !== 64) {
      return false;
    }
    for (let i = 0; i < value.length; i++) {
      if ('0123456789abcdef'.indexOf(value.charAt(i)) < 0) {
        return false;
      }
    }
    return true;
  }

  mock('getEventData', function (key) {
    return mockEvent[key];
  });
  mock('getCookieValues', function (name) {
    return name === '_mbuzz_vid' ? cookieValues : [];
  });
  mock('getRemoteAddress', '198.51.100.23');
  mock('getRequestHeader', function (name) {
    return requestHeaders[name];
  });
  mock('getTimestampMillis', NOW_MS);
  mock('getContainerVersion', {
    containerId: 'GTM-TEST', debugMode: false, previewMode: false, environmentMode: false, environmentName: '', version: '1'
  });
  mock('logToConsole', function (line) {
    logs.push(line);
  });
  mock('sendHttpRequest', function (url, callback, options, body) {
    const sent = JSON.parse(body);
    requests.push({url: url, options: options, body: sent, raw: body});
    const answerVisitor = responseVisitorId !== undefined ? responseVisitorId : (sent.visitor_id || null);
    callback(responseStatus, {'content-type': 'application/json'},
      JSON.stringify({status: 'accepted', visitor_id: answerVisitor}));
  });


___NOTES___

Multibuzz server-side attribution tag, template version 2.0.0.

One tag in auto mode handles every GA4 event: it reads an allowlist of event data, applies the consent
signal (x-ga-gcs or consent_state), keeps the _mbuzz_vid visitor cookie and posts one JSON payload per
event to the Multibuzz sGTM collect endpoint, which maps GA4 events to sessions, events, conversions and
identifies. Raw e-mail addresses and phone numbers are hashed before sending; the API key and user data are
never logged. Upgrading from v1: import this file over the v1 template and each v1 tag keeps its settings (the
v1 parameter names are kept under "Settings kept from v1") and sends its call type to /sgtm/v1/collect. Then,
when convenient, replace the four v1 tags by one v2 tag in auto mode and use a pk_sgtm_ key.
