/**
 * Counting the calls in flight on a real `@kubernetes/client-node` API
 * object, so that a test on a ManualClock moves simulated time only once
 * the code under test is back to waiting on its timers (or holds exactly the
 * calls the test stalled on purpose). The client does all the work; this
 * only watches its promises settle.
 */
import { eventually } from "../../support/factory.js";

/** A shared count of calls in flight. */
export interface CallCount {
  inFlight: number;
}

/** `client`, with every method call counted in `calls` until its promise settles. */
export function tracked<T extends object>(client: T, calls: CallCount): T {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.inFlight++;
        return (value.apply(target, args) as Promise<unknown>).finally(() => calls.inFlight--);
      };
    },
  });
}

/** Waits (in real time) until exactly `held` calls are in flight. */
export function idle(calls: CallCount, held = 0): Promise<void> {
  return eventually(() => calls.inFlight === held, 5000, `${held} call(s) in flight (now ${calls.inFlight})`);
}
