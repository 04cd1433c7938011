import { Command } from "commander";

export function incidentsCommand(): Command {
  return new Command("incidents").description("list and show incident records (not yet implemented)");
}
