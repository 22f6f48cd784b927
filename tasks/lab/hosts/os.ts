// Every operating-system command a lab host simulates (MicroK8s registers its own).
import { aptCommands } from './apt.ts';
import { fileCommands } from './files.ts';
import { snapCommand } from './snap.ts';
import { swapCommands } from './swap.ts';
import { sysctlCommands } from './sysctl.ts';
import type { CommandDef, SnapHooks } from './types.ts';
import { ufwCommands } from './ufw.ts';
import { userCommands } from './users.ts';

export function osCommands(ctx: { snapHooks: (snap: string) => SnapHooks | undefined }): CommandDef[] {
  return [
    ...aptCommands,
    ...fileCommands,
    snapCommand(ctx.snapHooks),
    ...swapCommands,
    ...sysctlCommands,
    ...ufwCommands,
    ...userCommands,
  ];
}
