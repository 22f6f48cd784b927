// Install MicroK8s from its snap channel
import type { Task } from './lib/task.ts';
import { NotImplementedError } from './lib/not-implemented.ts';

const task: Task = {
  id: 'install-microk8s',
  title: 'Install MicroK8s from its snap channel',
  needs: ['prepare-host'],
  scope: 'host',
  check() {
    throw new NotImplementedError('install-microk8s');
  },
  async apply() {
    throw new NotImplementedError('install-microk8s');
  },
};

export default task;
