# One image for every role of the service: the command picks it.
#   docker run IMAGE api | worker | aggregator | flash-sale | ingest <file> | gen …
# Build stage: all dependencies, compile TypeScript to dist/.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# patch-package applies these in npm's postinstall (a kafkajs fix for Node 24, see patches/README.md).
COPY patches ./patches
# npm install, not npm ci: the lock was written against a registry that lacks some platform
# builds of an optional dependency (msgpackr-extract), and npm ci refuses such a lock anywhere.
# npm install keeps every locked version.
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies and the compiled code only, run as a non-root user.
FROM node:24-slim AS runtime
ENV HOST=0.0.0.0 \
    PORT=3000 \
    COUPON_DATA_DIR=/data
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The flash-sale migrations, applied at start-up (dist/flash-sale/store.js reads ../../migrations).
COPY migrations ./migrations
# The node image's unprivileged user; the code and node_modules stay owned by root (read-only to it).
USER node
EXPOSE 3000
# Node flags of every role: src/shared/node-flags.ts (a test checks they are the same).
ENTRYPOINT ["node", "--initial-old-space-size=128", "dist/cli.js"]
CMD ["api"]
