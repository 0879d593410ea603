// Messages between the queue (committer.ts) and its storage thread
// (committer-thread.ts). File descriptors are process-wide: numbers cross;
// the thread hands spare fds over and never closes them (committer.ts).

export interface CommitterInit {
  tmpDir: string;
}

/** A pair of empty files made ahead of time in tmp/: the body and the envelope of one message. */
export interface Spare {
  dataFd: number;
  dataPath: string;
  envFd: number;
  envPath: string;
}

/** Rename both into place and make them durable. */
export interface CommitItem {
  id: string;
  dataFd: number;
  envFd: number;
  dataTmp: string;
  dataFinal: string;
  envTmp: string;
  envFinal: string;
}

/** A delivered message's files, removed in this order (body first). */
export interface RemoveItem {
  id: string;
  paths: string[];
}

export type ToCommitter =
  | { type: 'spares'; count: number }
  | { type: 'commit'; items: CommitItem[]; removals: RemoveItem[] }
  | { type: 'close' };

export type FromCommitter =
  | { type: 'spares'; spares: Spare[]; error?: { code?: string; message: string } }
  | { type: 'done'; results: Array<{ id: string; error?: { code?: string; message: string } }> }
  | { type: 'removed'; results: Array<{ id: string; error?: { code?: string; message: string } }> }
  | { type: 'closed' };
