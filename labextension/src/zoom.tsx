/** A picture that can be looked at closely: zoom in and out (buttons, Ctrl + wheel), scroll around, back to fit. */
import * as React from 'react';

const STEPS = [1, 1.5, 2, 3, 4, 6, 8];

/** The next zoom level up (+1) or down (-1) from `zoom`, within 1 (fit) and 8×. */
export function nextZoom(zoom: number, direction: 1 | -1): number {
  if (direction > 0) {
    return STEPS.find(step => step > zoom + 1e-9) ?? STEPS[STEPS.length - 1];
  }
  return [...STEPS].reverse().find(step => step < zoom - 1e-9) ?? STEPS[0];
}

export function Zoomable(props: { label: string; children: React.ReactNode }): JSX.Element {
  const [zoom, setZoom] = React.useState(1);
  const view = React.useRef<HTMLDivElement>(null);
  const step = (direction: 1 | -1) => setZoom(z => nextZoom(z, direction));

  // Ctrl + wheel zooms (a plain wheel scrolls the page, as everywhere else)
  React.useEffect(() => {
    const node = view.current;
    if (!node) {
      return;
    }
    const onWheel = (event: WheelEvent) => {
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        step(event.deltaY < 0 ? 1 : -1);
      }
    };
    node.addEventListener('wheel', onWheel, { passive: false });
    return () => node.removeEventListener('wheel', onWheel);
  }, []);

  return (
    <div className="jp-ReefLab-zoom">
      <div className="jp-ReefLab-zoomBar" role="toolbar" aria-label={`Zoom ${props.label}`}>
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-label="Zoom out"
          disabled={zoom <= 1}
          onClick={() => step(-1)}
        >
          −
        </button>
        <span className="jp-ReefLab-zoomLevel" aria-live="polite">
          {zoom === 1 ? 'Fit' : `${zoom}×`}
        </span>
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-label="Zoom in"
          disabled={zoom >= 8}
          onClick={() => step(1)}
        >
          +
        </button>
        {zoom !== 1 && (
          <button type="button" className="jp-ReefLab-button" onClick={() => setZoom(1)}>
            Fit
          </button>
        )}
        <span className="jp-ReefLab-muted">Ctrl + wheel zooms</span>
      </div>
      <div ref={view} className="jp-ReefLab-zoomView" tabIndex={0} aria-label={props.label}>
        <div className="jp-ReefLab-zoomContent" style={{ width: `${zoom * 100}%` }}>
          {props.children}
        </div>
      </div>
    </div>
  );
}
