/** The hardware a user may give a module: which profiles meet its recommendation, the default, and what others lack. */
import * as React from 'react';

import { Catalog } from './api';
import { describeHardware, describeNeeds } from './marketplaceState';

function ProfileChoice(props: { profile: Catalog.IFormProfile; isDefault: boolean }): JSX.Element {
  const { profile } = props;
  const fit = profile.fits ? 'jp-mod-fits' : 'jp-mod-nofit';
  return (
    <li className={`jp-ReefLab-profileChoice ${fit}`} data-profile={profile.slug}>
      <div className="jp-ReefLab-profileHead">
        <span className={`jp-ReefLab-fit ${fit}`}>
          {profile.fits ? 'fits' : 'below recommendation'}
        </span>
        <strong>{profile.display_name}</strong>
        {props.isDefault && (
          <span className="jp-ReefLab-badge" title="Chosen when you deploy without picking hardware">
            default
          </span>
        )}
      </div>
      <div className="jp-ReefLab-muted">
        {`Pre-filled: ${describeHardware(profile.prefill)} ` +
          `(max ${describeHardware(profile.limits, profile.gpu_model)})`}
        {!profile.fits && profile.reason && ` · ${profile.reason}: it may be slow or fail`}
      </div>
    </li>
  );
}

export function HardwareForm(props: { form: Catalog.IForm; valid: boolean; source: Catalog.Source }): JSX.Element {
  const { form } = props;
  return (
    <div className="jp-ReefLab-hardware">
      <p>
        <span className="jp-ReefLab-label">Recommends for inference: </span>
        {describeNeeds(form.needs)}
      </p>
      {form.reason && (
        <div className="jp-ReefLab-warning" role="note">
          {form.reason}
        </div>
      )}
      {!form.deployable && (
        <p className="jp-ReefLab-muted">
          {!props.valid
            ? 'It cannot be deployed until its metadata is fixed.'
            : props.source === 'remote'
              ? 'It cannot be deployed here: its code is not installed on this server.'
              : 'It cannot be deployed here: no runnable entry point is installed.'}
        </p>
      )}
      {form.profiles.length ? (
        <ul className="jp-ReefLab-profileChoices" aria-label="Hardware profiles">
          {form.profiles.map(p => (
            <ProfileChoice key={p.slug} profile={p} isDefault={p.slug === form.default} />
          ))}
        </ul>
      ) : (
        <p className="jp-ReefLab-muted">
          You may not use any hardware profile. Ask your administrator to add you to a group that has one.
        </p>
      )}
    </div>
  );
}
