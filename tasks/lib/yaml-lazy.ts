// The yaml package, loaded on first use: importing it costs ~0.1 s under tsx, and the commands
// that never parse YAML (`tasks list`, `graph`, `--help`) load every task module, so a task module
// takes YAML from here rather than importing it at the top.
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

const require = createRequire(import.meta.url);
let loaded: typeof Yaml | undefined;

export function loadYaml(): typeof Yaml {
  return (loaded ??= require('yaml') as typeof Yaml);
}
