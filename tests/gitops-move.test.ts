// Moving the GitOps repository on the lab: changing flux.github.repository, then flux.github.owner,
// of a converged homelab. GitHub refuses one public key on two repositories, so the cluster's deploy
// key must leave the old repository before it can open the new one. `check` says so in words,
// `run` converges, `check` then exits 0, and Flux syncs the new repository; the old one is left in
// place, untouched but for our deploy key. A move whose run failed is finished by `run --failed`;
// a cluster key someone made a deploy key of another repository gets the cluster a new key.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { Octokit } from '@octokit/rest';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { keyIdentity } from '../tasks/lib/flux.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { readiness, type KubeObject } from '../tasks/lib/kube.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { cli, labRepoPath, labWorld, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';

const W = { w: undefined as unknown as Workdir };
const TITLE = 'flux-system-production';
const git = (args: string[]) => execFileSync('git', args, { encoding: 'utf8', timeout: 30_000 }).trim();
const head = (owner: string, repo: string) => git(['--git-dir', labRepoPath(W.w.dir, owner, repo), 'rev-parse', 'main']);

function setRepository(owner: string, repository: string): void {
  const text = fs.readFileSync(W.w.file, 'utf8').replace(/github: \{ owner: [\w-]+, repository: [\w-]+,/, `github: { owner: ${owner}, repository: ${repository},`);
  fs.writeFileSync(W.w.file, text);
}

async function kubectlJson(args: string): Promise<KubeObject> {
  const lab = await startLabSession(loadInventory(W.w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    const r = await lab.hosts.transport('node1').exec(`microk8s kubectl ${args} -o json`);
    assert.is(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as KubeObject;
  } finally {
    await lab.close();
  }
}

/** The public key in the cluster's flux-system Secret. */
async function clusterKey(): Promise<string> {
  const s = (await kubectlJson('get secret flux-system -n flux-system')) as KubeObject & { data: Record<string, string> };
  return keyIdentity(Buffer.from(s.data['identity.pub'], 'base64').toString())!;
}

/** check, run, check: the plan's words for bootstrap-flux, and the homelab converged after. */
async function move(from: { owner: string; repo: string }, to: { owner: string; repo: string }): Promise<string[]> {
  const oldHead = head(from.owner, from.repo);
  const key = await clusterKey();
  setRepository(to.owner, to.repo);
  const check = await cli(['check', 'all', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  const plan = check.json().tasks.find((t) => t.task === 'bootstrap-flux')!.changes;

  const run = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
  const again = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());

  // Flux follows the new repository, at its head.
  const source = await kubectlJson('get gitrepository flux-system -n flux-system');
  assert.is((source.spec as { url: string }).url, `ssh://git@github.com/${to.owner}/${to.repo}`);
  assert.ok(readiness(source).ready, JSON.stringify(source.status));
  const revision = `main@sha1:${head(to.owner, to.repo)}`;
  assert.is((source.status as { artifact: { revision: string } }).artifact.revision, revision);
  const sync = await kubectlJson('get kustomization flux-system -n flux-system');
  assert.is((sync.status as { lastAppliedRevision: string }).lastAppliedRevision, revision);

  // The deploy key moved: exactly one, the cluster's, on the new repository; none of ours left on
  // the old one, which is otherwise untouched.
  const world = await labWorld(W.w.dir, `${to.owner}/${to.repo}`);
  assert.equal(world.repo!.deploy_keys.map((k) => [k.title, keyIdentity(k.key)]), [[TITLE, key]]);
  const old = await labWorld(W.w.dir, `${from.owner}/${from.repo}`);
  assert.ok(old.repo, 'the old repository is never deleted');
  assert.equal(old.repo!.deploy_keys, []);
  assert.is(head(from.owner, from.repo), oldHead, 'no commit to the old repository');
  return plan;
}

const moving = suite('moving the GitOps repository');

moving.before(async () => {
  W.w = workdir(singleNode(), 'hl-gitops-move-');
  const first = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(first.code, 0, first.text());
});

moving.after(() => W.w.remove());

moving('flux.github.repository changed: check plans it in words, run converges, Flux syncs the new repository', async () => {
  const plan = await move({ owner: 'my-user', repo: 'homelab-gitops' }, { owner: 'my-user', repo: 'homelab-gitops-v2' });
  assert.equal(plan.length, 4, plan.join('\n'));
  assert.match(plan[0], /^repository my-user\/homelab-gitops-v2: missing -> created \(private\), \d+ files committed$/);
  assert.is(
    plan[1],
    `deploy key ${TITLE}: on my-user/homelab-gitops, the repository Flux follows now -> removed there and added to my-user/homelab-gitops-v2 (GitHub lets one key open one repository)`,
  );
  assert.is(plan[2], 'flux source: ssh://git@github.com/my-user/homelab-gitops -> ssh://git@github.com/my-user/homelab-gitops-v2 (GitRepository flux-system)');
  assert.is(plan[3], `old repository my-user/homelab-gitops: left in place and never deleted; homelab removes only its deploy key ${TITLE} from it`);
});

moving('flux.github.owner changed to an organization: the same move across owners', async () => {
  const plan = await move({ owner: 'my-user', repo: 'homelab-gitops-v2' }, { owner: 'my-org', repo: 'homelab-gitops-v2' });
  assert.match(plan[0], /^repository my-org\/homelab-gitops-v2: missing -> created \(private\), \d+ files committed$/);
  assert.match(plan.join('\n'), /old repository my-user\/homelab-gitops-v2: left in place and never deleted/);
});

moving('a move whose run failed (GitHub down): run --failed finishes it', async () => {
  setRepository('my-org', 'homelab-gitops-v3');
  const failed = await cli(['run', 'all', '--lab', '--inventory', W.w.file, '--lab-faults', 'github:500=*'], { cwd: W.w.dir });
  assert.is(failed.code, 1, failed.text());
  const again = await cli(['run', '--failed', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());
  assert.match(again.text(), /removing deploy key flux-system-production from the old repository my-org\/homelab-gitops-v2/);
  const check = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 0, check.text());
  const source = await kubectlJson('get gitrepository flux-system -n flux-system');
  assert.is((source.spec as { url: string }).url, 'ssh://git@github.com/my-org/homelab-gitops-v3');
});

moving('the cluster\'s key made a deploy key of another repository by hand: run gives the cluster a new key', async () => {
  const repo = { owner: 'my-org', repo: 'homelab-gitops-v3' };
  const key = await clusterKey();
  const lab = await startLabSession(loadInventory(W.w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    const gh = new Octokit({ baseUrl: lab.github.url, auth: 'a-person', log: { debug() {}, info() {}, warn() {}, error() {} } });
    for (const k of (await gh.rest.repos.listDeployKeys(repo)).data) await gh.rest.repos.deleteDeployKey({ ...repo, key_id: k.id });
    await gh.rest.repos.createForAuthenticatedUser({ name: 'elsewhere', private: true, auto_init: true });
    await gh.rest.repos.createDeployKey({ owner: 'my-user', repo: 'elsewhere', title: 'laptop', key, read_only: true });
  } finally {
    await lab.close();
  }
  const check = await cli(['check', 'bootstrap-flux', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  assert.equal(check.json().tasks[0].changes, [`deploy key ${TITLE} on my-org/homelab-gitops-v3: no key titled ${TITLE} -> exactly one, the cluster's key`]);
  const run = await cli(['run', 'bootstrap-flux', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
  assert.match(run.text(), /the cluster's key is a deploy key of another repository, which GitHub allows only once/);
  const fresh = await clusterKey();
  assert.is.not(fresh, key);
  assert.equal((await labWorld(W.w.dir, 'my-org/homelab-gitops-v3')).repo!.deploy_keys.map((k) => [k.title, keyIdentity(k.key)]), [[TITLE, fresh]]);
  assert.equal((await labWorld(W.w.dir, 'my-user/elsewhere')).repo!.deploy_keys.map((k) => k.title), ['laptop'], 'the other repository is not ours to touch');
  const again = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());
});

moving.run();
