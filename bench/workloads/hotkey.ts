// Workload 6: one hot key, every message in order.
import { fifoWorkload } from './fifo.js';

// Sent in statements of 2,000 (one per message would take minutes to load).
export const hotkey = fifoWorkload('hotkey', 'One hot key, in order', () => 1, (c) => c.sizes.hotkey.messages, () => 0, () => 2000);
