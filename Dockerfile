# Reclaim: one image for both halves, `reclaim factory` and `reclaim operator`
# (the subcommand is the container's first argument). Tag it with the
# release's version (package.json), never `latest`: the manifests pin it.
#
#   docker build -t reclaim:0.1.0 .
#   docker run --rm reclaim:0.1.0 --help
#
# Two stages: the build stage has the dev dependencies (TypeScript) and
# compiles src/ to dist/ and bundles the command (dist/bundle/); the runtime stage has only production dependencies,
# dist/, bin/ and rules/, and runs as an unprivileged user.
#
# The base image is pinned: a full version tag (Node 20.19.5, Debian 12
# "bookworm", slim) and the digest of that tag's multi-platform index, so a
# rebuild gets the same bytes and a moved tag cannot slip in. To update, take
# the digest `docker buildx imagetools inspect node:<version>-bookworm-slim`
# prints, and change both stages together.

FROM node:20.19.5-bookworm-slim@sha256:9e70124bd00f47dd023e349cd587132ae61892acc0e47ed641416c3e18f401c3 AS build
WORKDIR /app
COPY package.json package-lock.json ./
# `npm ci` would run the `prepare` script (the build) before the sources are
# here: install first, build once they are.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json rolldown.config.mjs ./
COPY src ./src
RUN npm run build

FROM node:20.19.5-bookworm-slim@sha256:9e70124bd00f47dd023e349cd587132ae61892acc0e47ed641416c3e18f401c3 AS runtime
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
# 8080 WebSocket, 8081 control API and 9465 metrics (factory); 9464 metrics (operator).
EXPOSE 8080 8081 9465 9464
ENTRYPOINT ["node", "bin/reclaim"]
