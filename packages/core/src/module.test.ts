import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import {
  Embedding,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  OwletError,
  RMSNorm,
  StateDictError,
  initBackend,
  isOwletError,
} from './index.js';

/** A two-level toy tree with the key shapes of a real checkpoint. */
class Block extends Module {
  readonly q_proj: Linear;
  readonly norm: RMSNorm;
  constructor(d: number) {
    super();
    this.q_proj = this.registerModule('q_proj', new Linear(d, d, { bias: false }));
    this.norm = this.registerModule('norm', new RMSNorm(d, 1e-6));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => this.q_proj.forward(this.norm.forward(x)));
  }
}

class Toy extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<Block>;
  readonly vit_eos;
  constructor(d = 4, n = 2) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(10, d));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: n }, () => new Block(d))));
    this.vit_eos = this.registerParameter('vit_eos', [1, 1, d]);
  }
}

class Root extends Module {
  readonly model: Toy;
  constructor() {
    super();
    this.model = this.registerModule('model', new Toy());
  }
}

const EXPECTED_KEYS = [
  'model.vit_eos',
  'model.embed_tokens.weight',
  'model.layers.0.q_proj.weight',
  'model.layers.0.norm.weight',
  'model.layers.1.q_proj.weight',
  'model.layers.1.norm.weight',
];

function fullStateDict(): Map<string, tf.Tensor> {
  const m = new Map<string, tf.Tensor>();
  const keep = (f: () => tf.Tensor) => tf.keep(tf.tidy(f));
  m.set('model.vit_eos', tf.fill([1, 1, 4], 0.5));
  m.set(
    'model.embed_tokens.weight',
    keep(() => tf.range(0, 40).reshape([10, 4])),
  );
  for (const i of [0, 1]) {
    m.set(
      `model.layers.${i}.q_proj.weight`,
      keep(() => tf.eye(4).mul(i + 1)),
    );
    m.set(`model.layers.${i}.norm.weight`, tf.ones([4]));
  }
  return m;
}

describe('Module tree', () => {
  it('yields full Hugging Face keys in registration order and counts parameters', () => {
    const root = new Root();
    expect([...root.namedParameters()].map(([k]) => k)).toEqual(EXPECTED_KEYS);
    expect(root.model.layers.at(1).q_proj.path).toBe('model.layers.1.q_proj');
    expect(root.numParameters()).toBe(4 + 40 + 2 * (16 + 4));
    root.dispose();
  });

  it('is shape-only until loaded: building allocates no tensor', async () => {
    await initBackend('cpu');
    await expectNoLeaks(() => {
      const root = new Root();
      expect(root.unmaterializedKeys()).toEqual(EXPECTED_KEYS);
      const err = (() => {
        try {
          root.model.vit_eos.value;
        } catch (e) {
          return e;
        }
      })();
      expect(isOwletError(err, 'PARAMETER_NOT_LOADED')).toBe(true);
      expect((err as Error).message).toContain('model.vit_eos');
      root.dispose();
    });
  });

  it('rejects duplicate and malformed key segments', () => {
    class Bad extends Module {
      constructor(seg: string, twice: boolean) {
        super();
        this.registerParameter(seg, [1]);
        if (twice) this.registerParameter(seg, [1]);
      }
    }
    expect(() => new Bad('w', true)).toThrow(/registered twice/);
    expect(() => new Bad('a.b', false)).toThrow(OwletError);
    expect(() => new Bad('__proto__', false)).not.toThrow(); // a legal identifier; kept in a Map, not an object
  });
});

describeBackends('Module loading', ({ it: mit }) => {
  mit('loadStateDict loads every key (identity map) and shares the data', async () => {
    await expectNoLeaks(async () => {
      const sd = fullStateDict();
      const root = new Root();
      const report = root.loadStateDict(sd);
      expect(report.loaded.sort()).toEqual([...EXPECTED_KEYS].sort());
      tf.dispose([...sd.values()]); // the module keeps its own reference
      const w = await root.model.embed_tokens.weight.value.data();
      expect(Array.from(w).slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
      root.dispose();
    });
  });

  mit(
    'strict loading reports every missing, unexpected and mis-shaped key in one error and changes nothing',
    async () => {
      const root = new Root();
      const good = fullStateDict();
      root.loadStateDict(good);
      const before = await root.model.layers.at(0).q_proj.weight.value.data();
      const bad = fullStateDict();
      bad.get('model.layers.1.norm.weight')!.dispose();
      bad.delete('model.layers.1.norm.weight');
      bad.set('model.extra.weight', tf.zeros([2]));
      bad.get('model.layers.0.q_proj.weight')!.dispose();
      bad.set('model.layers.0.q_proj.weight', tf.zeros([4, 5]));
      let err: unknown;
      try {
        root.loadStateDict(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateDictError);
      const e = err as StateDictError;
      expect(e.code).toBe('STATE_DICT_MISMATCH');
      expect(e.report.missing).toEqual(['model.layers.1.norm.weight']);
      expect(e.report.unexpected).toEqual(['model.extra.weight']);
      expect(e.report.mismatched).toEqual([{ key: 'model.layers.0.q_proj.weight', expected: [4, 4], actual: [4, 5] }]);
      expect(e.message).toContain('expected [4, 4], checkpoint has [4, 5] for model.layers.0.q_proj.weight');
      // nothing was assigned, even the keys that matched
      expectAllClose(await root.model.layers.at(0).q_proj.weight.value.data(), before, { atol: 0 });
      // non-strict still refuses shape mismatches but tolerates missing/unexpected
      bad.get('model.layers.0.q_proj.weight')!.dispose();
      bad.set('model.layers.0.q_proj.weight', tf.zeros([4, 4]));
      const rep = root.loadStateDict(bad, { strict: false });
      expect(rep.missing).toEqual(['model.layers.1.norm.weight']);
      expect(rep.unexpected).toEqual(['model.extra.weight']);
      // ignore patterns make known extra keys legal in strict mode
      bad.set('model.layers.1.norm.weight', tf.ones([4]));
      const rep2 = root.loadStateDict(bad, { ignore: [/^model\.extra\./] });
      expect(rep2.ignored).toEqual(['model.extra.weight']);
      tf.dispose([...good.values(), ...bad.values()]);
      root.dispose();
    },
  );

  mit('trainable flags freeze by key pattern and reach the variables', () => {
    const root = new Root().initialize({ seed: 1 });
    expect(root.setTrainable(false)).toBe(6);
    expect(root.setTrainable(true, /\.q_proj\./)).toBe(2);
    expect(root.trainableVariables()).toHaveLength(2);
    expect(root.model.layers.at(0).q_proj.weight.value.trainable).toBe(true);
    expect(root.model.embed_tokens.weight.value.trainable).toBe(false);
    expect(root.numParameters({ trainableOnly: true })).toBe(32);
    expect(root.setTrainable(true, 'model.layers.1')).toBe(2);
    root.dispose();
  });

  mit('initialize is reproducible for a seed and follows each initialiser', async () => {
    const a = new Root().initialize({ seed: 7 });
    const b = new Root().initialize({ seed: 7 });
    const c = new Root().initialize({ seed: 8 });
    const wa = await a.model.embed_tokens.weight.value.data();
    expectAllClose(await b.model.embed_tokens.weight.value.data(), wa, { atol: 0 });
    expect(Array.from(await c.model.embed_tokens.weight.value.data())).not.toEqual(Array.from(wa));
    expect(Array.from(await a.model.layers.at(0).norm.weight.value.data())).toEqual([1, 1, 1, 1]);
    for (const m of [a, b, c]) m.dispose();
  });

  mit(
    'a forward in a named scope leaks nothing; dispose frees every parameter; use after dispose is typed',
    async () => {
      await expectNoLeaks(async () => {
        const root = new Root().initialize({ seed: 3 });
        const x = tf.ones([2, 4]);
        const y = root.model.layers.at(0).forward(x);
        expect(y.shape).toEqual([2, 4]);
        tf.dispose([x, y]);
        root.dispose();
        const x1 = tf.ones([1, 4]);
        expect(() => root.model.layers.at(0).forward(x1)).toThrow(/after dispose/);
        x1.dispose();
      });
    },
  );

  mit('nn layers compute what their ops compute', async () => {
    await expectNoLeaks(async () => {
      const lin = new Linear(3, 2).initialize({ seed: 1 });
      const ln = new LayerNorm(3, 1e-6).initialize({ seed: 1 });
      const x = tf.tensor2d([[1, 2, 3]]);
      const y = lin.forward(x);
      const wc = lin.weight.canonical();
      const w = (await wc.data()) as Float32Array;
      wc.dispose();
      const expected = [0, 1].map((o) => [1, 2, 3].reduce((s, v, i) => s + v * (w[o * 3 + i] as number), 0));
      expectAllClose(await y.data(), expected, { atol: 1e-5 });
      const z = ln.forward(x);
      expectAllClose(await z.data(), [-1.2247, 0, 1.2247], { atol: 1e-4 });
      tf.dispose([x, y, z]);
      lin.dispose();
      ln.dispose();
    });
  });
});

describeBackends('Linear weight layout', ({ it: mit, backend }) => {
  mit('a Linear weight may be stored transposed; linear(), canonical() and stateDict() hide it', async () => {
    await expectNoLeaks(async () => {
      const w = tf.tensor2d([
        [1, 2, 3],
        [4, 5, 6],
      ]); // [out 2, in 3]
      const lin = new Linear(3, 2, { bias: false });
      lin.loadStateDict({ weight: w });
      expect(lin.weight.storedTransposed).toBe(backend === 'wasm' || backend === 'cpu');
      expect(lin.weight.value.shape).toEqual(lin.weight.storedTransposed ? [3, 2] : [2, 3]);
      const x = tf.tensor2d([[1, 0, -1]]);
      const y = lin.forward(x);
      expect(Array.from(await y.data())).toEqual([-2, -2]);
      const c = lin.weight.canonical();
      expect(Array.from(await c.data())).toEqual([1, 2, 3, 4, 5, 6]);
      const sd = lin.stateDict();
      expect(sd.get('weight')!.shape).toEqual([2, 3]);
      // a round trip through stateDict keeps the values whatever the layout
      const lin2 = new Linear(3, 2, { bias: false });
      lin2.loadStateDict(sd);
      const y2 = lin2.forward(x);
      expect(Array.from(await y2.data())).toEqual([-2, -2]);
      // a second assign keeps the stored layout of the live variable
      const w2 = tf.mul(w, 2);
      lin.weight.assign(w2);
      w2.dispose();
      const y3 = lin.forward(x);
      expect(Array.from(await y3.data())).toEqual([-4, -4]);
      tf.dispose([w, x, y, y2, y3, c, ...sd.values()]);
      lin.dispose();
      lin2.dispose();
    });
  });
});

describe('Symbol.dispose', () => {
  it('makes `using` release a module', async () => {
    await initBackend('cpu');
    await expectNoLeaks(() => {
      const lin = new Linear(2, 2).initialize();
      lin[Symbol.dispose]();
      expect(lin.isDisposed).toBe(true);
    });
  });
});

describe('Module.replaceModule', () => {
  it('swaps a child in place: same key, fields and ModuleList items follow, the old one is detached', () => {
    const root = new Root();
    const old = root.model.layers.at(1);
    const next = new Block(4);
    expect(root.model.layers.replaceModule('1', next)).toBe(old);
    expect(root.model.layers.at(1)).toBe(next);
    expect([...root.model.layers]).toEqual([root.model.layers.at(0), next]);
    expect(next.path).toBe('model.layers.1');
    expect(old.path).toBe('');
    const q = new Linear(4, 4, { bias: false });
    root.model.layers.at(0).replaceModule('q_proj', q);
    expect(root.model.layers.at(0).q_proj).toBe(q);
    expect([...root.namedParameters()].map(([k]) => k)).toEqual(EXPECTED_KEYS);
    expect(() => root.model.replaceModule('nope', q)).toThrow(OwletError);
    expect(() => root.model.layers.at(1).replaceModule('q_proj', q)).toThrow(/already registered/);
  });
});
