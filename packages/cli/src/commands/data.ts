/** `hwa data download NAME --dir D`: fetch a dataset's public files (needs internet). */
import { download, defaultDataDir, type DownloadableDataset } from '@hwa/engine';
import type { Logger } from 'pino';

export async function downloadDataset(
  name: DownloadableDataset,
  options: { dir?: string; mirror?: string },
  log: Logger,
): Promise<void> {
  const target = options.dir ?? defaultDataDir(name);
  const result = await download(name, target, { log, ...(options.mirror ? { baseUrl: options.mirror } : {}) });
  log.info(
    { event: 'download.done', dir: result.dir, files: result.files.length, bytes: result.bytesFetched },
    `${name}: ${result.files.length} files in ${result.dir}; train with --dataset ${name} --data-dir ${result.dir}`,
  );
}
