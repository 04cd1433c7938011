import { Command } from "commander";

export function rulesTestCommand(): Command {
  return new Command("test").description("run rule unit tests (not yet implemented)");
}
