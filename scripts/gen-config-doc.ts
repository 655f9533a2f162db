// Writes docs/configuration.md from the node's option schema (src/config.ts), the same source as
// `activeflow node --help`. A test fails when the file is out of date: run `npm run docs`.
import { writeFileSync } from 'node:fs';
import { configMarkdown } from '../src/config-doc.js';
import { deployClusterConfigs, k8sNatsManifest } from '../src/nats/deploy-configs.js';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), configMarkdown());
for (const [file, text] of Object.entries(deployClusterConfigs())) writeFileSync(new URL(`../deploy/cluster/${file}`, import.meta.url), text);
writeFileSync(new URL('../deploy/k8s/nats.yaml', import.meta.url), k8sNatsManifest());
