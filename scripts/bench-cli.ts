// `tasks` exactly as cron runs it (node --import tsx), with GitHub, Cloudflare and Flux's releases at
// the addresses in BENCH_ENDPOINTS and each host reached over ssh as BENCH_SSH says (JSON both): the
// benchmark's whole-process check of lab hosts behind real sshds, where the login user (the sshd's)
// is not the inventory's. Nothing of the lab is loaded here.
import { runCli } from '../tasks/index.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';

const ssh = JSON.parse(process.env.BENCH_SSH ?? '{}') as {
  knownHostsFile: string;
  hosts: Record<string, { address: string; port: number; user: string; identityFile: string }>;
};
runCli(process.argv.slice(2), {
  endpoints: JSON.parse(process.env.BENCH_ENDPOINTS ?? '{}'),
  transportFor: (host) =>
    new SshTransport({ host: { ...host, ...ssh.hosts[host.name] }, knownHosts: 'strict', knownHostsFile: ssh.knownHostsFile, connectTimeoutS: 10 }),
});
