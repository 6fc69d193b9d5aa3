// Workload 6: one hot key, every message in order.
import { fifoWorkload } from './fifo.js';

export const hotkey = fifoWorkload('hotkey', 'One hot key, in order', () => 1, (c) => c.sizes.hotkey.messages);
