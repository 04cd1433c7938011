/** The hand-moved clock lives beside the real one (the soak benchmark uses it too); tests import it from here. */
export { ManualClock } from "../../src/contract/clock.js";
