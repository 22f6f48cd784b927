// A task whose implementation has not landed yet fails (it never claims to be converged).
export class NotImplementedError extends Error {
  constructor(task: string) {
    super(`${task} is not implemented yet`);
    this.name = 'NotImplementedError';
  }
}
