import { defineConfig } from 'vitepress';

const packages = [
  ['errors', '@owlet/errors'],
  ['checkpoint', '@owlet/checkpoint'],
  ['core', '@owlet/core'],
  ['tokenizer', '@owlet/tokenizer'],
  ['vision-encoder', '@owlet/vision-encoder'],
  ['visual-abstractor', '@owlet/visual-abstractor'],
  ['modality-adaptive-decoder', '@owlet/modality-adaptive-decoder'],
  ['mplug-owl', '@owlet/mplug-owl'],
  ['trainer', '@owlet/trainer'],
  ['cli', 'owlet (CLI)'],
  ['web', '@owlet/web (browser app)'],
] as const;

// A dead link fails the build (VitePress' default; never set ignoreDeadLinks).
export default defineConfig({
  title: 'owlet',
  description: 'mPLUG-Owl2 and mPLUG-Owl in TypeScript on TensorFlow.js',
  cleanUrls: true,
  lastUpdated: false,
  srcExclude: ['test/**', 'scripts/**', 'README.md'],
  themeConfig: {
    nav: [
      { text: 'Guide', link: '/guide/what-is-owlet' },
      { text: 'Packages', link: '/packages/' },
      { text: 'API', link: '/api/' },
      { text: 'Architecture', link: '/architecture' },
    ],
    sidebar: [
      {
        text: 'Guide',
        items: [
          { text: 'What owlet is', link: '/guide/what-is-owlet' },
          { text: 'Install', link: '/guide/install' },
          { text: 'Quick start: Node', link: '/guide/quick-start-node' },
          { text: 'Quick start: browser', link: '/guide/quick-start-browser' },
          { text: 'Released checkpoints', link: '/guide/checkpoints' },
          { text: 'Composing custom models', link: '/guide/custom-models' },
          { text: 'Training', link: '/guide/training' },
          { text: 'Serving (OpenAI API)', link: '/guide/serving' },
          { text: 'Backends, dtypes, benchmarks', link: '/guide/backends' },
          { text: 'Scaling past one machine', link: '/guide/scaling' },
        ],
      },
      { text: 'Architecture', link: '/architecture' },
      {
        text: 'Packages',
        link: '/packages/',
        items: packages.map(([slug, text]) => ({ text, link: `/packages/${slug}` })),
      },
      { text: 'API reference', link: '/api/' },
      { text: 'Reliability checklist', link: '/reference/reliability-checklist' },
    ],
    search: { provider: 'local' },
  },
});
