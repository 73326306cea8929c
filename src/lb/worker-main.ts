// Entry of a cluster worker process (forked by ClusterPlane; see cluster.ts).
import { runWorker } from './cluster.js';

runWorker();
