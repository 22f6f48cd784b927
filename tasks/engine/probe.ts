// Joining every probe due on a host into ONE script (one round trip), and splitting the output back.
// Each probe command runs in its own subshell through `eval` of its quoted text (a syntax error,
// `exit`, `set -e` or a trap in one cannot stop or change the others), with stdin closed. Up to
// PROBE_PARALLELISM of them run at once: on a real node a probe is mostly a process starting
// (`microk8s kubectl` is a snap, two bash wrappers and a Go binary, ~0.2 s; `microk8s status` ~1 s),
// and a node has cores to start them side by side. Each one's stdout, stderr and exit code go to
// files, and the frame around them is printed whole when it ends, in the order they end: markers
// carrying a random nonce, so a probe that prints marker-like text cannot forge a frame (it cannot
// know the nonce). A `start` marker says when each began, to name the one a timeout cut short.
import { randomBytes } from 'node:crypto';
import type { ProbeOutput } from '../lib/task.ts';
import { quote } from '../lib/shell.ts';

export type ProbeSections = Record<string, string>; // key -> shell text

/** Probe commands run at once on one host: the cores of a small homelab node. */
export const PROBE_PARALLELISM = 4;

export function buildProbeScript(sections: ProbeSections, nonce = randomBytes(9).toString('hex'), parallelism = PROBE_PARALLELISM): { script: string; nonce: string } {
  const keys = Object.keys(sections);
  const m = (kind: string) => quote(`@@${nonce}:`) + `"$1"` + quote(`:${kind}@@`);
  const lines = [
    // The host may lack mktemp's default dir permissions; falling back to the cwd is not safe: fail loudly.
    `__d=$(mktemp -d) || exit 97`,
    `trap 'rm -rf "$__d"' EXIT`,
    // A section: its output to files, then its exit code, then `.d` (created last: it is finished).
    `__run() { ( eval "$2" ) </dev/null >"$__d/$1.o" 2>"$__d/$1.e"; printf '%s' "$?" >"$__d/$1.r"; : >"$__d/$1.d"; }`,
    // Its frame, printed by this shell only, whole: frames never interleave.
    `__show() { local rc; read -r rc <"$__d/$1.r"; printf '%s\\n' ${m('out')}; [ ! -s "$__d/$1.o" ] || /bin/cat "$__d/$1.o"; ` +
      `printf '\\n%s\\n' ${m('err')}; [ ! -s "$__d/$1.e" ] || /bin/cat "$__d/$1.e"; printf '\\n%s%s\\n' ${m('rc')} "$rc"; }`,
    // Shows the finished ones among those running; the others stay in __live.
    `__harvest() { local i k=(); for i in "\${__live[@]}"; do if [ -e "$__d/$i.d" ]; then __show "$i"; else k+=("$i"); fi; done; __live=("\${k[@]}"); }`,
    // Until one ends (`wait -n`, bash >= 4.3). No child left (127) with some unshown: they died
    // without a frame (killed), and their sections are reported missing rather than waited for.
    `__wait() { wait -n 2>/dev/null; local rc=$?; __harvest; [ "$rc" -ne 127 ] || __live=(); }`,
    `__live=()`,
  ];
  keys.forEach((key, i) => {
    lines.push(
      `while [ "\${#__live[@]}" -ge ${parallelism} ]; do __wait; done`,
      `printf '%s\\n' ${quote(`@@${nonce}:${i}:start@@`)}`,
      `__run ${i} ${quote(sections[key])} &`,
      `__live+=(${i})`,
    );
  });
  lines.push(`while [ "\${#__live[@]}" -gt 0 ]; do __wait; done`);
  return { script: lines.join('\n') + '\n', nonce };
}

/**
 * Split the joined output. A section whose frame is missing or broken (the connection dropped
 * mid-way, the host killed the script) gets exit code -1 and what could be recovered, never a
 * neighbour's bytes.
 */
export function splitProbeOutput(keys: string[], nonce: string, stdout: string): Record<string, ProbeOutput> {
  const out: Record<string, ProbeOutput> = {};
  keys.forEach((key, i) => {
    const tag = (kind: string) => `@@${nonce}:${i}:${kind}@@`;
    const start = stdout.indexOf(tag('out') + '\n');
    const errAt = start < 0 ? -1 : stdout.indexOf('\n' + tag('err') + '\n', start);
    const rcAt = errAt < 0 ? -1 : stdout.indexOf('\n' + tag('rc'), errAt);
    if (start < 0 || errAt < 0 || rcAt < 0) {
      out[key] = { stdout: '', stderr: 'probe output missing (connection lost or script killed)', exitCode: -1 };
      return;
    }
    const body = stdout.slice(start + tag('out').length + 1, errAt);
    const err = stdout.slice(errAt + tag('err').length + 2, rcAt);
    const rcLine = stdout.slice(rcAt + 1 + tag('rc').length).split('\n', 1)[0];
    out[key] = { stdout: body, stderr: err, exitCode: Number.parseInt(rcLine, 10) };
  });
  return out;
}

/** The key of the first section that had started and not finished when the output stopped (a
 *  command that hung until the timeout), or null. */
export function unfinishedSection(keys: string[], nonce: string, stdout: string): string | null {
  for (let i = 0; i < keys.length; i++) {
    if (stdout.includes(`@@${nonce}:${i}:start@@`) && !stdout.includes(`@@${nonce}:${i}:rc@@`)) return keys[i];
  }
  return null;
}
