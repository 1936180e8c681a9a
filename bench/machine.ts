// Facts about the machine a run was made on, printed in the header and kept in the JSON.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';

export interface Machine {
  cpuModel: string;
  cores: number;
  node: string;
  redisServer: string;
  kernel: string;
  memoryGb: number;
  loadAverage: number[];
}

export function machineFacts(redisServer: string): Machine {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux: keep os.cpus()'s answer
  }
  return {
    cpuModel,
    cores: availableParallelism(),
    node: process.version,
    redisServer,
    kernel: release(),
    memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
