/**
 * Markdown written by module authors, rendered by JupyterLab's own markdown renderer as untrusted
 * content: its sanitizer strips scripts, event handlers and unsafe URLs. Without a renderer
 * (outside JupyterLab) the text is shown as it is.
 */
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import * as React from 'react';

export function Markdown(props: { source: string; rendermime?: IRenderMimeRegistry | null }): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const [failed, setFailed] = React.useState(false);
  const { source, rendermime } = props;

  React.useEffect(() => {
    if (!rendermime || !host.current || failed) {
      return;
    }
    const renderer = rendermime.createRenderer('text/markdown');
    renderer.addClass('jp-ReefLab-markdownBody');
    const model = new MimeModel({ data: { 'text/markdown': source }, trusted: false });
    let disposed = false;
    // the node is placed by hand, not with Widget.attach: React removes the host before this effect's
    // cleanup runs, and detaching a widget whose host is gone throws
    host.current.appendChild(renderer.node);
    renderer.renderModel(model).catch(() => {
      if (!disposed) {
        setFailed(true);
      }
    });
    return () => {
      disposed = true;
      renderer.node.remove();
      renderer.dispose();
    };
  }, [source, rendermime, failed]);

  if (!rendermime || failed) {
    return <div className="jp-ReefLab-markdown jp-ReefLab-plainText">{source}</div>;
  }
  return <div ref={host} className="jp-ReefLab-markdown" />;
}
