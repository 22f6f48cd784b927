// Create the Cloudflare Tunnel, its routes and DNS
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'create-tunnel',
  title: 'Create the Cloudflare Tunnel, its routes and DNS',
  needs: ['enable-addons'],
  scope: 'cluster',
  check() {
    throw new NotImplementedError('create-tunnel');
  },
  async apply() {
    throw new NotImplementedError('create-tunnel');
  },
};

export default task;
