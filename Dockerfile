# The activeflow node image (deploy/k8s/activeflow.yaml). Runs TypeScript through tsx, as npm start does.
FROM node:20-bookworm-slim
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
