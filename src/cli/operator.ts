import { Command } from "commander";

export function operatorCommand(): Command {
  return new Command("operator").description("run the remediation operator (not yet implemented)");
}
