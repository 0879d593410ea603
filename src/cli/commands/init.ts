// Placeholder until the module that owns this command lands; replaced, not extended.
import { Smtp365Error } from '../../errors/error.ts';

export async function run(_argv: string[]): Promise<number> {
  throw new Smtp365Error('INTERNAL', 'smtp365 init is not available in this build yet');
}
