// A freshly installed Ubuntu Server 24.04 (noble), as the lab's hosts start out. Only what the
// tasks look at is modelled; every value below is what such a machine shows, with its source.
import type { HostState } from './types.ts';

/**
 * Packages present after a default install (the `ubuntu-server` seed installs curl and git; jq,
 * open-iscsi and nfs-common are not there). Versions: noble-updates, amd64.
 */
const PREINSTALLED: Record<string, string> = {
  'ca-certificates': '20240203',
  curl: '8.5.0-2ubuntu10.6',
  git: '1:2.43.0-1ubuntu7.3',
  'openssh-server': '1:9.6p1-3ubuntu13.11',
  procps: '2:4.0.4-4ubuntu3.2',
  snapd: '2.68.5+ubuntu24.04',
  sudo: '1.9.15p5-3ubuntu5.24.04.1',
  ufw: '0.36.2-6',
  'util-linux': '2.39.3-9ubuntu6.2',
};

/**
 * sysctl keys the lab knows (a key absent here does not exist, as in /proc/sys), with their values
 * on a 4 GiB VM. fs.inotify.max_user_watches: since Linux 5.11 the kernel derives it from memory
 * (1% of RAM / INOTIFY_WATCH_COST, clamped to [8192, 1048576]: fs/notify/inotify/inotify_user.c).
 * vm.max_map_count: Ubuntu 24.04 ships 1048576 (/usr/lib/sysctl.d/10-map-count.conf).
 */
const SYSCTL: Record<string, string> = {
  'fs.file-max': '9223372036854775807',
  'fs.inotify.max_queued_events': '16384',
  'fs.inotify.max_user_instances': '128',
  'fs.inotify.max_user_watches': '29162',
  'fs.protected_fifos': '1',
  'fs.protected_hardlinks': '1',
  'fs.protected_regular': '2',
  'fs.protected_symlinks': '1',
  'fs.aio-max-nr': '65536',
  'kernel.dmesg_restrict': '1',
  'kernel.keys.maxbytes': '20000',
  'kernel.keys.maxkeys': '200',
  'kernel.kptr_restrict': '1',
  'kernel.panic': '0',
  'kernel.pid_max': '4194304',
  'kernel.printk': '4\t4\t1\t7',
  'kernel.sysrq': '176',
  'kernel.yama.ptrace_scope': '1',
  'net.core.rmem_max': '212992',
  'net.core.somaxconn': '4096',
  'net.core.wmem_max': '212992',
  'net.ipv4.conf.all.forwarding': '0',
  'net.ipv4.conf.all.rp_filter': '2',
  'net.ipv4.conf.default.rp_filter': '2',
  'net.ipv4.ip_forward': '0',
  'net.ipv4.ip_local_port_range': '32768\t60999',
  'net.ipv4.tcp_keepalive_time': '7200',
  'net.ipv4.tcp_syncookies': '1',
  'net.ipv6.conf.all.forwarding': '0',
  'net.ipv6.conf.all.use_tempaddr': '2',
  'net.ipv6.conf.default.forwarding': '0',
  'net.ipv6.conf.default.use_tempaddr': '2',
  'vm.dirty_background_ratio': '10',
  'vm.dirty_ratio': '20',
  'vm.max_map_count': '1048576',
  'vm.mmap_min_addr': '65536',
  'vm.overcommit_memory': '0',
  'vm.swappiness': '60',
};

/** The sysctl.d files procps, systemd and Ubuntu install (abridged to the settings above). */
const SYSCTL_FILES: Record<string, string> = {
  '/etc/sysctl.d/10-console-messages.conf': '# the following stops low-level messages on console\nkernel.printk = 4 4 1 7\n',
  '/etc/sysctl.d/10-ipv6-privacy.conf':
    '# IPv6 Privacy Extensions (RFC 4941)\nnet.ipv6.conf.all.use_tempaddr = 2\nnet.ipv6.conf.default.use_tempaddr = 2\n',
  '/etc/sysctl.d/10-kernel-hardening.conf': '# These settings are specific to hardening the kernel itself\nkernel.kptr_restrict = 1\n',
  '/etc/sysctl.d/10-magic-sysrq.conf': '# The magic SysRq key\nkernel.sysrq = 176\n',
  '/etc/sysctl.d/10-network-security.conf':
    '# Turn on Source Address Verification in all interfaces\nnet.ipv4.conf.default.rp_filter=2\nnet.ipv4.conf.all.rp_filter=2\n',
  '/etc/sysctl.d/10-ptrace.conf': '# The PTRACE system is used for debugging.\nkernel.yama.ptrace_scope = 1\n',
  '/etc/sysctl.d/10-zeropage.conf': '# Protect the zero page of memory from userspace mmap\nvm.mmap_min_addr = 65536\n',
  // A symlink to ../sysctl.conf on the real system: its content, every line commented out.
  '/etc/sysctl.d/99-sysctl.conf': '#\n# /etc/sysctl.conf - Configuration file for setting system variables\n#\n',
  '/etc/sysctl.conf': '#\n# /etc/sysctl.conf - Configuration file for setting system variables\n#\n',
  '/usr/lib/sysctl.d/10-map-count.conf': 'vm.max_map_count = 1048576\n',
  '/usr/lib/sysctl.d/50-pid-max.conf': 'kernel.pid_max = 4194304\n',
  '/usr/lib/sysctl.d/99-protect-links.conf':
    '# Protected links\nfs.protected_fifos = 1\nfs.protected_hardlinks = 1\nfs.protected_regular = 2\nfs.protected_symlinks = 1\n',
};

// curtin writes the root and boot lines; subiquity adds the swap file (4 GiB here) with tabs.
const FSTAB = `# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/ubuntu-vg/ubuntu-lv during curtin installation
/dev/disk/by-id/dm-uuid-LVM-Zd2ZkEIcdzTwqmKzGfqYc9QUbTnyJWDxlMZ9fNb0YBGkWWEfhszbbKpLjBYlHbcY / ext4 defaults 0 1
# /boot was on /dev/sda2 during curtin installation
/dev/disk/by-uuid/4c5a1fe6-8a23-4f9e-9b3c-1b5cd2a0f0a7 /boot ext4 defaults 0 1
/swap.img\tnone\tswap\tsw\t0\t0
`;

const OS_RELEASE = `PRETTY_NAME="Ubuntu 24.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.3 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
`;

/**
 * The installer's user gets its own group plus those of subiquity's `users-and-groups` that exist
 * on a server (adm cdrom dip plugdev users), and sudo. Standard Debian gids (base-passwd).
 */
const GROUPS: Record<string, number> = { root: 0, adm: 4, cdrom: 24, sudo: 27, dip: 30, plugdev: 46, users: 100 };
const LOGIN_GROUPS = ['adm', 'cdrom', 'sudo', 'dip', 'plugdev', 'users'];

export function freshHost(name: string, address: string, loginUser: string): HostState {
  const host: HostState = {
    name,
    address,
    files: {},
    users: { root: { uid: 0, groups: ['root'], home: '/root' } },
    groups: { ...GROUPS },
    sessions: {},
    packages: { ...PREINSTALLED },
    sysctl: { ...SYSCTL },
    swap: { active: ['/swap.img'] },
    // /etc/default/ufw: IPV6=yes, DEFAULT_INPUT_POLICY="DROP", OUTPUT "ACCEPT", FORWARD "DROP".
    ufw: { enabled: false, defaults: { incoming: 'deny', outgoing: 'allow', routed: 'deny' }, rules: [] },
    snaps: {},
    microk8s: null,
  };
  const dirs: [string, number, string][] = [
    ['/etc', 0o755, 'root'],
    ['/etc/sysctl.d', 0o755, 'root'],
    ['/home', 0o755, 'root'],
    ['/root', 0o700, 'root'],
    ['/usr', 0o755, 'root'],
    ['/usr/lib', 0o755, 'root'],
    ['/usr/lib/sysctl.d', 0o755, 'root'],
    ['/var', 0o755, 'root'],
    ['/var/lib', 0o755, 'root'],
    ['/var/snap', 0o755, 'root'],
  ];
  for (const [p, mode, owner] of dirs) host.files[p] = { content: '', mode, owner, dir: true };
  const file = (p: string, content: string, mode = 0o644) => (host.files[p] = { content, mode, owner: 'root' });
  for (const [p, content] of Object.entries(SYSCTL_FILES)) file(p, content);
  file('/etc/fstab', FSTAB);
  file('/etc/hostname', `${name}\n`);
  file('/etc/os-release', OS_RELEASE);
  file('/swap.img', '', 0o600);
  ensureUser(host, loginUser);
  return host;
}

/** The login user as the installer creates it; kept when it exists (state from an earlier run). */
export function ensureUser(host: HostState, user: string): void {
  if (host.users[user]) return;
  const uid = 1000 + Object.values(host.users).filter((u) => u.uid >= 1000).length;
  host.groups[user] = uid;
  host.users[user] = { uid, groups: [user, ...LOGIN_GROUPS], home: `/home/${user}` };
  // Ubuntu 21.04 and later create home directories 0750 (adduser's DIR_MODE).
  host.files[`/home/${user}`] = { content: '', mode: 0o750, owner: user, dir: true };
}

/** A new system group (groupadd --system): the highest free gid below 1000. */
export function addSystemGroup(host: HostState, group: string): void {
  if (host.groups[group] !== undefined) return;
  const used = new Set(Object.values(host.groups));
  let gid = 999;
  while (used.has(gid)) gid--;
  host.groups[group] = gid;
}
