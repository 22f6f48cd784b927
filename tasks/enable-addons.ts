// Enable the MicroK8s addons
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'enable-addons',
  title: 'Enable the MicroK8s addons',
  needs: ['join-nodes'],
  scope: 'cluster',
  check() {
    throw new NotImplementedError('enable-addons');
  },
  async apply() {
    throw new NotImplementedError('enable-addons');
  },
};

export default task;
