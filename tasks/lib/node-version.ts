// The Node.js lines homelab runs on: the LTS lines still maintained (22 from 22.13, 24, 26). Entry
// points import this module first, so an older Node stops here with a sentence instead of a stack
// trace from a dependency that needs a newer runtime (listr2 11, the Kubernetes schema models).
// Everything else is imported after this module has run (ES modules evaluate in import order).

export const NODE_REQUIREMENT = '22.13 or newer (an LTS line: 22, 24 or 26)';

/** null when this Node is new enough, else the sentence to print. */
export function nodeTooOld(version = process.versions.node, execPath = process.execPath): string | null {
  const [major, minor] = version.split('.').map(Number);
  if (major > 22 || (major === 22 && minor >= 13)) return null;
  return (
    `error: homelab needs Node.js ${NODE_REQUIREMENT}; this is Node.js v${version} (${execPath}).\n` +
    'Install a current LTS release (https://nodejs.org/en/download, your distribution, or `npm i -g node@24`) and run again.'
  );
}

const message = nodeTooOld();
if (message) {
  process.stderr.write(message + '\n');
  process.exit(1);
}
