/** A panel section whose body folds away under its heading; folded content stays mounted (it keeps its state). */
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

export interface ISectionProps {
  title: string;
  /** shown after the title when folded, e.g. "alice" */
  hint?: string;
  defaultOpen?: boolean;
  /** buttons at the right of the heading */
  actions?: React.ReactNode;
  className?: string;
  /** told when the section unfolds (true) or folds (false), e.g. to ask the server only while it is open */
  onToggle?: (open: boolean) => void;
  children: React.ReactNode;
}

export function Section(props: ISectionProps): JSX.Element {
  const [open, setOpen] = React.useState(props.defaultOpen ?? true);
  const bodyId = React.useId();
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <section className={`jp-ReefLab-section ${props.className ?? ''}`} aria-label={props.title}>
      <div className="jp-ReefLab-sectionHeader">
        <button
          type="button"
          className="jp-ReefLab-sectionToggle"
          aria-expanded={open}
          aria-controls={bodyId}
          onClick={() => {
            setOpen(!open);
            props.onToggle?.(!open);
          }}
        >
          <Caret.react tag="span" className="jp-ReefLab-caret" />
          <span className="jp-ReefLab-sectionTitle">{props.title}</span>
          {!open && props.hint && <span className="jp-ReefLab-muted jp-ReefLab-sectionHint">{props.hint}</span>}
        </button>
        {props.actions}
      </div>
      <div id={bodyId} className="jp-ReefLab-sectionBody" hidden={!open}>
        {props.children}
      </div>
    </section>
  );
}
