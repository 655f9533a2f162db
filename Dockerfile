# The activeflow node image (deploy/k8s/activeflow.yaml). Runs TypeScript through tsx, as npm start does.
# Node 22 (LTS): Node 20 is past its end of life (April 2026).
FROM node:22-bookworm-slim
WORKDIR /opt/activeflow
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts
COPY tsconfig.json ./
COPY bin bin
COPY machines machines
COPY actors actors
COPY src src
USER node
# A larger young generation: fewer scavenges under load (docs/operations.md, "Tuning").
ENTRYPOINT ["node", "--max-semi-space-size=32", "bin/activeflow.mjs"]
CMD ["node"]
