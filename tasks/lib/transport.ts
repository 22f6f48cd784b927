// The one way task code reaches a machine. Implementations: local (this machine), ssh (OpenSSH),
// and the lab's (a simulated host). Task modules cannot tell them apart.

export interface ExecOptions {
  /** Bytes for the command's stdin. Secrets travel here, never on a command line. */
  input?: string;
  /** Run as root: wrapped in `sudo -n` when the transport's user is not root. */
  sudo?: boolean;
  /** Kill the command after this long and fail with a timeout naming it. Default: transport's. */
  timeoutMs?: number;
  /** Called with each chunk of output as it arrives (progress for slow commands). */
  onOutput?: (chunk: string) => void;
  /** Ctrl-C: stop the command (on the host too) and reject with a TransportError saying so. */
  signal?: AbortSignal;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

export interface Transport {
  /** The inventory host name: the prefix of every line about this machine. */
  readonly host: string;
  /** How the transport reaches the host, for messages: `ssh ubuntu@192.168.1.10:22`, `lab node1`. */
  readonly describe: string;
  /**
   * Run one shell script (bash) on the host. Resolves with any exit code; rejects only when the
   * host could not be reached or the command timed out (TransportError).
   */
  exec(script: string, opts?: ExecOptions): Promise<ExecResult>;
  /** Drop the connection so the next exec logs in anew (new group membership takes effect). */
  reconnect(): Promise<void>;
  close(): Promise<void>;
  /** Connections opened and commands run so far (benchmarks and round-trip tests read these). */
  readonly stats: { connections: number; commands: number };
}
