/**
 * The restricted unpickler of torch.save state dicts: the opcode loop (`machine.ts`), the table of
 * allowed globals and their rebuilders (`rebuilders.ts`), the stack values (`values.ts`) and the
 * state dict → tensor views step (`state-dict.ts`).
 */
export { unpickleStateDict, MAX_PICKLE_BYTES } from './machine.js';
export { TORCH_STORAGE_DTYPES } from './rebuilders.js';
export type { TorchStorageRef, TorchTensorRef } from './values.js';
