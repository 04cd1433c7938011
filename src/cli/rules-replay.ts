import { Command } from "commander";

export function rulesReplayCommand(): Command {
  return new Command("replay").description("replay rules over a recorded log (not yet implemented)");
}
