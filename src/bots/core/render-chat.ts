// Sentences of the chat flows that render.ts does not hold yet: what a Cancel press came to and one
// line per job for `/queue` (Discord) or an App Home (Slack). Pure, like render.ts, which they could
// join.
import type { CancelOutcome } from './job-client.js';

/** The answer to the person who pressed Cancel (the job's own message shows "Cancelled."). */
export function renderCancelOutcome(outcome: CancelOutcome): string {
  switch (outcome) {
    case 'removed':
      return 'Cancelled before it started.';
    case 'signalled':
      return 'Cancelling: the worker stops at its next step.';
    case 'finished':
      return 'Too late to cancel: it has already finished.';
    case 'not_found':
      return 'That job does not exist any more.';
  }
}

/** `3 jobs in progress:` above the lines of /queue. */
export function renderQueueTitle(count: number): string {
  if (count === 0) return 'You have no pictures in progress.';
  return count === 1 ? 'One picture in progress:' : `${count} pictures in progress:`;
}
