// Prepare the host: packages, sysctl, swap, firewall
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'prepare-host',
  title: 'Prepare the host: packages, sysctl, swap, firewall',
  needs: [],
  scope: 'host',
  check() {
    throw new NotImplementedError('prepare-host');
  },
  async apply() {
    throw new NotImplementedError('prepare-host');
  },
};

export default task;
