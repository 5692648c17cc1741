// Sample Web Pixel payloads built from @shopify/web-pixels-extension's own types (issue 14, docs/shopify.md).
//
//   node pixel_events.mjs   -> JSON on stdout
//
// Hand-written event shapes only prove the pixel agrees with whoever wrote them: that is how `myShopifyDomain` (the
// real field is `myshopifyDomain`) reached every store. This generator reads the package's .d.ts with the pinned
// TypeScript compiler API and walks, for every standard event the package defines (`PixelEvents[K]` whose `type` is
// `EventType.Standard`) and for `RegisterInit`, the type tree, emitting one complete sample with every property
// present, so the tests exercise exactly the names and nesting Shopify publishes:
//   string literal / enum member -> that value; an enum -> its first member; `X | null` (or optional) -> X;
//   string -> a plausible value chosen by property name; number -> a distinct number; boolean -> true;
//   array -> one element; object -> every property; recursion and depth beyond MAX_DEPTH -> null (listed in
//   `truncated`). An `id` is a GID (`gid://shopify/<Type>/<n>`, so the pixel's numeric-tail logic runs), except an
//   event's own id, which has Shopify's `sh-` form. Output is deterministic (counters, no randomness).
//
// Output: {package: {name, version}, typescript, standard_events: {name: event}, other_events: [name],
//          init: RegisterInit, truncated: [path]}

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const ts = require('typescript');

const PACKAGE = '@shopify/web-pixels-extension';
const PACKAGE_DIR = path.join(HERE, 'node_modules', ...PACKAGE.split('/'));
const MAX_DEPTH = 10;
export const TIMESTAMP = '2026-05-20T03:15:00.000Z';
const SHOP_DOMAIN = 'generated-shop.myshopify.com';
const HOST = 'generated-shop.example';
const STOREFRONT = `https://${HOST}`;
const CLIENT_ID = '5f0c2d1e-8b7a-4c3d-9e2f-1a0b9c8d7e6f';
const CURRENCIES = ['CAD', 'EUR', 'GBP', 'AUD', 'NZD', 'USD', 'SEK', 'CHF'];
const EMPTY = ts.TypeFlags.Null | ts.TypeFlags.Undefined | ts.TypeFlags.Void | ts.TypeFlags.Never;

// The package's exported declarations, through the compiler's checker.
function packageTypes() {
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
  const entry = path.join(PACKAGE_DIR, manifest.types);
  const program = ts.createProgram([entry], {
    noEmit: true, strict: true, skipLibCheck: true, types: [], target: ts.ScriptTarget.ES2020,
    lib: ['lib.es2020.d.ts', 'lib.dom.d.ts'],
  });
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry));
  const exported = new Map(checker.getExportsOfModule(moduleSymbol).map((symbol) => [symbol.name, symbol]));
  const declared = (name) => {
    const symbol = exported.get(name);
    if (symbol === undefined) throw new Error(`${PACKAGE} ${manifest.version} does not export ${name}`);
    return symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
  };
  return { manifest, checker, declared };
}

// The interface (or class) declaring a property, else the owner passed down (anonymous object types).
function ownerOf(prop, fallback) {
  const parent = prop.declarations && prop.declarations[0] && prop.declarations[0].parent;
  return parent && (ts.isInterfaceDeclaration(parent) || ts.isClassDeclaration(parent)) ? parent.name.text : fallback;
}

function makeSampler(checker) {
  const counters = { id: 0, number: 0, currency: 0, text: 0 };
  const truncated = [];
  const next = (name) => {
    counters[name] += 1;
    return counters[name];
  };

  function text(at) {
    const { prop, owner } = at;
    if (prop === 'id' && at.eventRoot) return `sh-${String(next('id')).padStart(8, '0')}-0000-4000-8000-000000000000`;
    if (prop === 'id') return `gid://shopify/${owner}/${7000000000 + next('id')}`;
    switch (prop) {
      case 'myshopifyDomain': return SHOP_DOMAIN;
      case 'timestamp': return TIMESTAMP;
      case 'clientId': return CLIENT_ID;
      case 'token': return `c1-${String(next('text')).padStart(32, '0')}`;
      case 'currencyCode': return CURRENCIES[(next('currency') - 1) % CURRENCIES.length];
      case 'href':
      case 'url':
      case 'storefrontUrl':
      case 'action': return `${STOREFRONT}/pages/generated-${next('text')}`;
      case 'referrer': return 'https://www.example.com/search?q=lamps';
      case 'origin': return STOREFRONT;
      case 'host':
      case 'hostname': return HOST;
      case 'protocol': return 'https:';
      case 'port': return '443';
      case 'pathname': return `/pages/generated-${next('text')}`;
      case 'search': return '?utm_source=generated';
      case 'hash': return '#generated';
      case 'email': return `generated.buyer${next('text')}@example.com`;
      case 'phone':
      case 'smsMarketingPhone': return `+1555010${String(next('text')).padStart(4, '0')}`;
      case 'isoCode':
      case 'countryCode': return 'CA';
      case 'provinceCode': return 'ON';
      case 'language': return 'en-CA';
      case 'characterSet': return 'UTF-8';
      case 'userAgent': return 'Mozilla/5.0 (generated)';
      default: return `${owner} ${prop} ${next('text')}`;
    }
  }

  function number(at) {
    const n = next('number');
    if (at.prop === 'amount') return n * 10 + 0.25; // money: distinct, two decimals
    if (at.prop === 'quantity') return 2 + (n % 7);
    return n;
  }

  function object(type, at) {
    if (at.depth >= MAX_DEPTH || at.stack.includes(type)) {
      truncated.push(at.path);
      return null;
    }
    const out = {};
    for (const prop of checker.getPropertiesOfType(type)) {
      out[prop.name] = sample(checker.getTypeOfSymbol(prop), {
        path: `${at.path}.${prop.name}`, prop: prop.name, owner: ownerOf(prop, at.owner), depth: at.depth + 1,
        stack: [...at.stack, type], eventRoot: at.depth === 0 && at.event === true,
      });
    }
    return out;
  }

  function sample(type, at) {
    const members = (type.isUnion() ? type.types : [type]).filter((t) => !(t.flags & EMPTY));
    if (members.length === 0) return null;
    const others = members.filter((t) => !(t.flags & ts.TypeFlags.BooleanLiteral));
    if (others.length === 0) return members.some((t) => t.intrinsicName === 'true'); // boolean -> true
    const t = others[0]; // an enum: its first member; `A | B`: A
    if (t.flags & (ts.TypeFlags.StringLiteral | ts.TypeFlags.NumberLiteral)) return t.value;
    if (t.flags & (ts.TypeFlags.String | ts.TypeFlags.TemplateLiteral)) return text(at);
    if (t.flags & ts.TypeFlags.Number) return number(at);
    if (t.flags & ts.TypeFlags.Boolean) return true;
    if (checker.isTupleType(t)) {
      return checker.getTypeArguments(t).map((element, i) => sample(element, { ...at, path: `${at.path}[${i}]` }));
    }
    if (checker.isArrayType(t)) {
      if (at.depth >= MAX_DEPTH) return [];
      return [sample(checker.getTypeArguments(t)[0], { ...at, path: `${at.path}[0]`, eventRoot: false })];
    }
    if (t.flags & (ts.TypeFlags.Object | ts.TypeFlags.Intersection)) return object(t, at);
    return null; // any / unknown: nothing to learn from
  }

  return { sample, truncated };
}

export function generate() {
  const { manifest, checker, declared } = packageTypes();
  const { sample, truncated } = makeSampler(checker);
  const standard = checker.getTypeOfSymbol(declared('EventType').exports.get('Standard'));
  const isStandard = (eventType) => {
    const typeProp = eventType.getProperty('type');
    if (typeProp === undefined) return false;
    const t = checker.getTypeOfSymbol(typeProp);
    return t === standard || (t.symbol !== undefined && t.symbol === standard.symbol);
  };
  const root = (name, type, event) => sample(type, {
    path: name, prop: name, owner: type.symbol ? type.symbol.name : name, depth: 0, stack: [], event,
  });

  const init = root('init', checker.getDeclaredTypeOfSymbol(declared('RegisterInit')), false);
  const standardEvents = {};
  const otherEvents = [];
  for (const prop of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(declared('PixelEvents')))) {
    const eventType = checker.getTypeOfSymbol(prop);
    if (isStandard(eventType)) standardEvents[prop.name] = root(prop.name, eventType, true);
    else otherEvents.push(prop.name);
  }
  return {
    package: { name: manifest.name, version: manifest.version },
    typescript: ts.version,
    standard_events: standardEvents,
    other_events: otherEvents,
    init,
    truncated,
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(JSON.stringify(generate(), null, 1) + '\n', () => process.exit(0));
}
