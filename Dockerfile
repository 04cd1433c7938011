# Reclaim: one image for both halves, `reclaim factory` and `reclaim operator`
# (the subcommand is the container's first argument).
#
#   docker build -t reclaim:latest .
#   docker run --rm reclaim:latest --help
#
# Two stages: the build stage has the dev dependencies (TypeScript) and
# compiles src/ to dist/; the runtime stage has only production dependencies,
# dist/, bin/ and rules/, and runs as an unprivileged user.
# Pin the base image by digest (node:20-bookworm-slim@sha256:…) for releases.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# `npm ci` would run the `prepare` script (the build) before the sources are
# here: install first, build once they are.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY rules ./rules
# Any non-root uid; the manifests run it as 10001 with a read-only root
# filesystem, so anything written goes to a mounted volume (/tmp).
USER 10001
# 8080 WebSocket and 8081 control API (factory); 9464 metrics (operator).
EXPOSE 8080 8081 9464
ENTRYPOINT ["node", "bin/reclaim"]
