/** Worker jobs `base.resolve` (the one base-model resolver, core/base/resolve.ts), `base.validate`, `base.weights`. */
import { openBaseModel } from '../../core/base/basemodel';
import { baseWeightsFile, resolveBase } from '../../core/base/resolve';
import { BaseWeights, ResolveBase, ValidateBase } from '../../shared/jobs';
import { handle, type JobHandler } from './registry';

export const baseModelHandlers: JobHandler[] = [
  handle(ResolveBase, async (p) => resolveBase(p.adapterPath, p.roots)),
  handle(ValidateBase, async (p) => {
    openBaseModel(p.dir).store.close();
    return { dir: p.dir };
  }),
  handle(BaseWeights, async (p) => ({ weights: baseWeightsFile(p.path) })),
];
