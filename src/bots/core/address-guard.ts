// The network half of the attachment downloads' request-forgery guard (ingest.ts holds the URL
// half): whatever a host name resolves to, a download never connects to loopback, private, link-local,
// unique-local or otherwise non-public addresses. The check runs inside the connection's own DNS
// lookup, so the address checked is the address connected to: a name that answers public once and
// private the next time (DNS rebinding) gains nothing, on the first hop and after every redirect.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { BlockList, isIP, isIPv4 } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import { HostNotAllowedError } from '../../shared/errors.js';

/**
 * Addresses that are not on the public internet (IANA special-purpose registries). IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`) is matched against the IPv4 rules by BlockList itself; NAT64 (`64:ff9b::/96`)
 * is unwrapped by hand below.
 */
const nonPublic = new BlockList();
const v4: [string, number][] = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];
const v6: [string, number][] = [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 32], // Teredo
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (wraps any IPv4 address, private ones included)
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
];
for (const [net, prefix] of v4) nonPublic.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of v6) nonPublic.addSubnet(net, prefix, 'ipv6');

/** Whether `address` (an IP literal) is a public unicast address a download may connect to. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return !nonPublic.check(address, 'ipv4');
  if (nonPublic.check(address, 'ipv6')) return false;
  // NAT64's well-known prefix carries an IPv4 address in its last 32 bits: judge that one.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const nat64 = /^64:ff9b::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (nat64) {
    const n = (Number.parseInt(nat64[1]!, 16) << 16) | Number.parseInt(nat64[2]!, 16);
    const embedded = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    return isIPv4(embedded) && !nonPublic.check(embedded, 'ipv4');
  }
  if (canonical.startsWith('64:ff9b::')) return false; // a NAT64 form we cannot read: refuse
  return true;
}

/** Resolves a host name to all its addresses (dns.lookup's shape with `all: true`). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true } satisfies LookupAllOptions, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    ),
  );

/**
 * Resolves `hostname` and refuses it unless every address is public: one private address among
 * public ones is enough to refuse, since the connection may pick any of them.
 */
export async function resolvePublic(
  hostname: string,
  resolve: Resolver = systemResolver,
): Promise<LookupAddress[]> {
  const addresses = await resolve(hostname);
  if (addresses.length === 0) throw new HostNotAllowedError(`${hostname} (no address)`);
  const bad = addresses.find((a) => !isPublicAddress(a.address));
  if (bad) throw new HostNotAllowedError(`${hostname} (${bad.address}: not a public address)`);
  return addresses;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net/tls.connect that only hands out public addresses. Node calls it with
 * `all: true` when it races IPv4 and IPv6 (autoSelectFamily), else wants one address.
 */
export function publicOnlyLookup(resolve: Resolver = systemResolver) {
  return (
    hostname: string,
    options: { all?: boolean | undefined } | number | undefined,
    callback: LookupCallback,
  ): void => {
    resolvePublic(hostname, resolve).then(
      (addresses) => {
        if (typeof options === 'object' && options?.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}

let agent: Agent | undefined;

/**
 * fetch over connections that can only reach public addresses (undici, Node's own fetch, with the
 * lookup above on its connector; one keep-alive pool for every download). An IP literal in the URL
 * would skip the lookup, so those are refused here too (ingest.ts refuses them before).
 */
export const publicFetch: typeof fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) !== 0 && !isPublicAddress(host))
    throw new HostNotAllowedError(`${host} (not a public address)`);
  agent ??= new Agent({ connect: { lookup: publicOnlyLookup() } });
  // undici's types are its own copies of the DOM ones; the objects are the same at run time.
  return (await undiciFetch(url, { ...(init as object), dispatcher: agent } as never)) as unknown as Response;
};
