/**
 * `reclaim token <userId>`: prints a client token signed with RECLAIM_AUTH_SECRET.
 */
import { Command, Option } from "commander";
import { isUserId } from "../contract/ids.js";
import { TokenAuth } from "../factory/auth.js";
import { DEV_AUTH_SECRET } from "../factory/config.js";
import { durationIn } from "./options.js";

/** Bounds of `--ttl`, in ms: 1 s (a token's expiry is in whole seconds) to 365 days (rotate a longer-lived canary token). */
export const TTL_BOUNDS = { min: 1000, max: 365 * 86_400_000 } as const;

export function tokenCommand(): Command {
  return new Command("token")
    .description("print a client token (HS256 JWT, sub = userId) signed with RECLAIM_AUTH_SECRET")
    .argument("<userId>", "the user the token is for")
    .addOption(
      new Option("--ttl <duration>", "validity, e.g. 15m, 1h, 7d (1s to 365d)").argParser(durationIn(TTL_BOUNDS.min, TTL_BOUNDS.max)).default(3_600_000, "1h"),
    )
    .addOption(new Option("--dev", "sign with the built-in dev secret when RECLAIM_AUTH_SECRET is unset").default(false))
    .action(async (userId: string, flags: { ttl: number; dev: boolean }) => {
      if (!isUserId(userId)) {
        console.error(`reclaim token: invalid user id ${JSON.stringify(userId)}: must match ^[A-Za-z0-9._:@-]{1,128}$`);
        process.exit(2);
      }
      const secret = process.env.RECLAIM_AUTH_SECRET || (flags.dev ? DEV_AUTH_SECRET : undefined);
      if (secret === undefined) {
        console.error("reclaim token: RECLAIM_AUTH_SECRET is not set (use --dev for the built-in development secret)");
        process.exit(2);
      }
      let auth: TokenAuth;
      try {
        auth = new TokenAuth(secret);
      } catch (err) {
        console.error(`reclaim token: ${(err as Error).message}`);
        process.exit(2);
      }
      process.stdout.write(`${await auth.sign(userId, Math.max(1, Math.round(flags.ttl / 1000)))}\n`);
    });
}
