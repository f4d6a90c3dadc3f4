// TypeDoc names a module by its path from the common root (`core/src`); name it after the package
// instead (`@owlet/core`), as users import it.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const mod of context.project.getReflectionsByKind(ReflectionKind.Module)) {
      const m = /^([\w-]+)\/src$/.exec(mod.name);
      if (m) mod.name = `@owlet/${m[1]}`;
    }
  });
}
