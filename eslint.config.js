// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-*/**', 'node_modules/**', 'coverage/**', 'bench/results/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-bitwise': 'off',
    },
  },
  {
    // Type-aware rules on the sources: a promise nobody awaits or catches can reject unseen (a
    // socket handler must never throw, nor leave a rejection behind); a switch over a union must
    // name every member, so a new reason, state or probe type is handled everywhere.
    files: ['src/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
    },
  },
  // Folder boundaries (docs/design.md §1): imports point one way, and another folder is reached
  // only through its index.ts.
  ...boundary(['src/cid/**/*.ts', 'src/wire/**/*.ts'], []),
  ...boundary(['src/lb/**/*.ts', 'src/backend/**/*.ts'], ['wire', 'cid']),
  ...boundary(['src/demo/**/*.ts'], ['backend', 'wire', 'cid']),
  ...boundary(['src/anycast/**/*.ts'], ['lb', 'backend', 'wire', 'cid']),
  ...boundary(['src/cli/**/*.ts', 'src/cli.ts'], ['anycast', 'backend', 'demo', 'lb', 'wire', 'cid', 'cli']),
);

/** `files` may import `../<folder>/index.js` of the folders in `allowed`, nothing else outside their own folder. */
function boundary(files, allowed) {
  return [
    {
      files,
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: [
              {
                group: [
                  '../*/*',
                  '../*.js',
                  ...allowed.map((f) => `!../${f}/index.js`),
                  ...(allowed.includes('cli') ? ['!../cli/*'] : []),
                ],
                message: `this folder may import only ${allowed.length ? allowed.map((f) => `../${f}/index.js`).join(', ') : 'node builtins and its own files'} (docs/design.md §1)`,
              },
            ],
          },
        ],
      },
    },
  ];
}
