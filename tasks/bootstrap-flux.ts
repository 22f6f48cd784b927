// Publish the GitOps repository and bootstrap Flux
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'bootstrap-flux',
  title: 'Publish the GitOps repository and bootstrap Flux',
  needs: ['create-tunnel', 'seed-monitoring'],
  scope: 'cluster',
  check() {
    throw new NotImplementedError('bootstrap-flux');
  },
  async apply() {
    throw new NotImplementedError('bootstrap-flux');
  },
};

export default task;
