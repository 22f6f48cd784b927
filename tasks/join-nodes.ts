// Join every node to the first control plane
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'join-nodes',
  title: 'Join every node to the first control plane',
  needs: ['install-microk8s'],
  scope: 'cluster',
  check() {
    throw new NotImplementedError('join-nodes');
  },
  async apply() {
    throw new NotImplementedError('join-nodes');
  },
};

export default task;
