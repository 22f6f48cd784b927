// What stands at the other end of Alertmanager's notifications in the tests, on 127.0.0.1: one
// HTTP server recording every request (webhook, ntfy, Discord, Slack and heartbeat URLs are paths
// of it), an HTTP proxy that accepts CONNECT and answers TLS itself (Alertmanager 0.25 posts to
// Pushover's fixed https://api.pushover.net, so the test reaches it through `proxy_url`), and a
// small SMTP server with STARTTLS and AUTH PLAIN (RFC 5321, 3207, 4954) that keeps each message.
// The certificates come from openssl, signed by a throwaway CA that the Alertmanager under test
// trusts through SSL_CERT_FILE (Go's crypto/x509 reads it on Linux).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';

export interface Received {
  at: number;
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Mail {
  at: number;
  auth: { user: string; password: string } | null;
  tls: boolean;
  from: string;
  to: string[];
  data: string;
}

export interface TestCa {
  dir: string;
  /** The CA certificate, for SSL_CERT_FILE. */
  caFile: string;
  key: string;
  cert: string;
}

/** A CA and a server certificate for api.pushover.net and 127.0.0.1, or null without openssl. */
export function makeCa(): TestCa | null {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-alert-ca-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=homelab test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=api.pushover.net');
    fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:api.pushover.net,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
  } catch {
    fs.rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  return { dir, caFile: path.join(dir, 'ca.crt'), key: read('server.key'), cert: read('server.crt') };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

function recorder(into: Received[], failing: Set<string> = new Set()) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://receiver');
      into.push({ at: Date.now(), method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if ([...failing].some((p) => url.pathname.startsWith(p))) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('down for the test');
        return;
      }
      // Discord answers a webhook with 204, Slack and ntfy with 200; Alertmanager takes any 2xx.
      res.writeHead(url.pathname.startsWith('/discord/') ? 204 : 200, { 'content-type': 'application/json' });
      res.end(url.pathname.startsWith('/discord/') ? undefined : '{"ok":true}');
    });
  };
}

export interface Receivers {
  /** http://127.0.0.1:PORT, where every web destination is a path. */
  url: string;
  /** Paths (prefixes) answered 500 from now on: a destination that is down. */
  failing: Set<string>;
  http: Received[];
  /** Requests that came through the CONNECT proxy (Pushover's API). */
  proxied: Received[];
  proxyUrl: string;
  smtp: { port: number; mails: Mail[] };
  close(): Promise<void>;
}

export async function startReceivers(ca: TestCa, smtpLogin: { user: string; password: string }): Promise<Receivers> {
  const got: Received[] = [];
  const proxied: Received[] = [];
  const failing = new Set<string>();
  const web = http.createServer(recorder(got, failing));
  // The TLS side of the proxy: never listens, is handed each CONNECTed socket.
  const inner = https.createServer({ key: ca.key, cert: ca.cert }, recorder(proxied));
  const proxy = http.createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (req.url !== 'api.pushover.net:443') {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) socket.unshift(head);
    inner.emit('connection', socket);
  });
  const mails: Mail[] = [];
  const smtp = net.createServer((socket) => smtpSession(socket, ca, smtpLogin, mails));
  const [webPort, proxyPort, smtpPort] = await Promise.all([listen(web), listen(proxy), listen(smtp)]);
  return {
    url: `http://127.0.0.1:${webPort}`,
    failing,
    http: got,
    proxied,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    smtp: { port: smtpPort, mails },
    close: async () => {
      await Promise.all([close(web), close(proxy), close(smtp)]);
      inner.closeAllConnections();
    },
  };
}

/** One SMTP conversation: greeting, EHLO, STARTTLS, EHLO again, AUTH PLAIN, MAIL, RCPT, DATA, QUIT. */
function smtpSession(raw: net.Socket, ca: TestCa, login: { user: string; password: string }, mails: Mail[]): void {
  let socket: net.Socket | tls.TLSSocket = raw;
  let secure = false;
  let buffer = '';
  let inData = false;
  let mail: Mail = { at: 0, auth: null, tls: false, from: '', to: [], data: '' };
  const say = (line: string) => socket.write(`${line}\r\n`);
  const onLine = (line: string) => {
    if (inData) {
      if (line === '.') {
        inData = false;
        mails.push({ ...mail, at: Date.now(), tls: secure });
        mail = { ...mail, from: '', to: [], data: '' };
        say('250 2.0.0 queued');
      } else mail.data += (line.startsWith('..') ? line.slice(1) : line) + '\r\n';
      return;
    }
    const [verb, ...rest] = line.split(' ');
    const arg = rest.join(' ');
    switch (verb.toUpperCase()) {
      case 'EHLO':
        say('250-receiver.test');
        say('250-8BITMIME');
        say(secure ? '250 AUTH PLAIN' : '250 STARTTLS');
        return;
      case 'STARTTLS': {
        say('220 2.0.0 ready to start TLS');
        socket.removeAllListeners('data');
        const upgraded = new tls.TLSSocket(raw, { isServer: true, key: ca.key, cert: ca.cert });
        socket = upgraded;
        secure = true;
        buffer = '';
        upgraded.on('data', onData);
        upgraded.on('error', () => {});
        return;
      }
      case 'AUTH': {
        const [mech, initial] = arg.split(' ');
        const [, user, password] = Buffer.from(initial ?? '', 'base64').toString('utf8').split('\0');
        if (mech !== 'PLAIN' || !secure || user !== login.user || password !== login.password) return say('535 5.7.8 authentication failed');
        mail.auth = { user, password };
        return say('235 2.7.0 authenticated');
      }
      case 'MAIL':
        mail.from = /<([^>]*)>/.exec(arg)?.[1] ?? '';
        return say('250 2.1.0 ok');
      case 'RCPT':
        mail.to.push(/<([^>]*)>/.exec(arg)?.[1] ?? '');
        return say('250 2.1.5 ok');
      case 'DATA':
        inData = true;
        return say('354 end with <CRLF>.<CRLF>');
      case 'QUIT':
        say('221 2.0.0 bye');
        socket.end();
        return;
      default:
        return say('502 5.5.2 not implemented');
    }
  };
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    for (let nl = buffer.indexOf('\r\n'); nl >= 0; nl = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      onLine(line);
    }
  };
  raw.on('data', onData);
  raw.on('error', () => {});
  say('220 receiver.test ESMTP');
}
