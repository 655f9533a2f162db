# The activeflow node image (deploy/k8s/activeflow.yaml): the compiled JavaScript only, no
# TypeScript tooling. Node 22 (LTS): Node 20 is past its end of life (April 2026).
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin bin
COPY scripts/build.mjs scripts/build.mjs
COPY machines machines
COPY actors actors
COPY src src
RUN node scripts/build.mjs --force

FROM node:22-bookworm-slim
WORKDIR /opt/activeflow
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts
COPY bin bin
# No src/ here: bin/activeflow.mjs runs dist/ (bin/build-state.mjs says "only").
COPY --from=build /src/dist dist
USER node
# A larger young generation: fewer scavenges under load (docs/operations.md, "Tuning").
ENTRYPOINT ["node", "--max-semi-space-size=32", "bin/activeflow.mjs"]
CMD ["node"]
