// A small typed event emitter (the SDK runs in browsers and Node alike, so no node:events).
// Listeners run synchronously in the order added; one that throws does not stop the others: its
// error is reported on `console.error`, since an app's bug must not break the protocol's state.

export type Listener<T> = (value: T) => void;

export class Emitter<Events extends Record<string, unknown>> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set!.delete(fn as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) {
      try {
        (fn as Listener<Events[K]>)(value);
      } catch (e) {
        console.error(`imlog: a listener of ${String(event)} threw`, e);
      }
    }
  }
}
