// Seed monitoring and the Homepage dashboard
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'seed-monitoring',
  title: 'Seed monitoring and the Homepage dashboard',
  needs: ['enable-addons'],
  scope: 'cluster',
  check() {
    throw new NotImplementedError('seed-monitoring');
  },
  async apply() {
    throw new NotImplementedError('seed-monitoring');
  },
};

export default task;
